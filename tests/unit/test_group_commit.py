from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from impactwatch.collector.events import AssetUpdate, Batch, DagRun, TaskTry
from impactwatch.collector.state.merge import Changes
from impactwatch.collector.state.store import Store, make_engine, task_try_t
from impactwatch.collector.state.writer import GroupCommit


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.002)


class Recorder:
    """A group write that blocks while `gate` is clear, and records each group."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.gate = threading.Event()
        self.groups: list[list[str]] = []
        self.committed: set[str] = set()
        self.fail_on = fail_on

    def __call__(self, jobs: list[str]) -> list[BaseException | None]:
        self.gate.wait(10)
        self.groups.append(list(jobs))
        if self.fail_on in jobs:
            raise RuntimeError(f"cannot write {self.fail_on}")
        self.committed.update(jobs)
        return [None] * len(jobs)


def submit_in_thread(
    writer: GroupCommit[str], job: str, out: dict[str, object]
) -> threading.Thread:
    def go() -> None:
        try:
            writer.submit(job)
            out[job] = "ok"
        except Exception as exc:
            out[job] = exc

    thread = threading.Thread(target=go)
    thread.start()
    return thread


def queued(writer: GroupCommit[str], n: int) -> None:
    wait_for(lambda: len(writer._queue) == n, f"{n} queued jobs")


def test_jobs_that_arrive_during_a_write_are_written_together_after_it() -> None:
    write = Recorder()
    writer: GroupCommit[str] = GroupCommit(write)
    out: dict[str, object] = {}
    threads = [submit_in_thread(writer, "a", out)]
    wait_for(lambda: writer._busy, "the first write")
    for job in ("b", "c", "d"):
        threads.append(submit_in_thread(writer, job, out))
        queued(writer, len(threads) - 1)
    assert out == {}  # nobody returns before its group is written
    write.gate.set()
    for t in threads:
        t.join(10)
    assert write.groups == [["a"], ["b", "c", "d"]]
    assert out == dict.fromkeys("abcd", "ok")
    assert (writer.groups, writer.jobs) == (2, 4)


def test_a_lone_job_is_written_at_once() -> None:
    write = Recorder()
    write.gate.set()
    writer: GroupCommit[str] = GroupCommit(write)
    writer.submit("a")
    assert write.committed == {"a"}


def test_a_failed_write_fails_every_job_of_its_group_and_no_other() -> None:
    write = Recorder(fail_on="c")
    writer: GroupCommit[str] = GroupCommit(write)
    out: dict[str, object] = {}
    threads = [submit_in_thread(writer, "a", out)]
    wait_for(lambda: writer._busy, "the first write")
    for job in ("b", "c"):
        threads.append(submit_in_thread(writer, job, out))
        queued(writer, len(threads) - 1)
    write.gate.set()
    for t in threads:
        t.join(10)
    assert out["a"] == "ok"
    assert all(isinstance(out[j], RuntimeError) for j in "bc")
    writer.submit("e")  # the writer carries on
    assert "e" in write.committed


def test_groups_are_capped_and_can_be_switched_off() -> None:
    for enabled, max_items, expected in (
        (True, 2, [["a"], ["b", "c"], ["d"]]),
        (False, 100, [["a"], ["b"], ["c"], ["d"]]),
    ):
        write = Recorder()
        writer: GroupCommit[str] = GroupCommit(write, max_items=max_items, enabled=enabled)
        out: dict[str, object] = {}
        threads = [submit_in_thread(writer, "a", out)]
        wait_for(lambda w=writer: w._busy, "the first write")  # type: ignore[misc]
        for job in ("b", "c", "d"):
            threads.append(submit_in_thread(writer, job, out))
            queued(writer, len(threads) - 1)
        write.gate.set()
        for t in threads:
            t.join(10)
        assert write.groups == expected
        assert out == dict.fromkeys("abcd", "ok")


class Outcomes:
    """`submit_nowait` callbacks: what each job was told, and on which thread."""

    def __init__(self) -> None:
        self.told: dict[str, tuple[BaseException | None, str]] = {}

    def done(self, job: str) -> Callable[[BaseException | None], None]:
        def record(error: BaseException | None) -> None:
            self.told[job] = (error, threading.current_thread().name)

        return record


def a_then_b_and_c_queued(write: Recorder) -> tuple[GroupCommit[str], Outcomes]:
    """A writer writing "a" (held at `write.gate`), with "b" and "c" queued behind it."""
    writer: GroupCommit[str] = GroupCommit(write)
    outcomes = Outcomes()
    writer.submit_nowait("a", outcomes.done("a"))
    wait_for(lambda: writer._busy, "the first write")
    for job in ("b", "c"):
        writer.submit_nowait(job, outcomes.done(job))
    queued(writer, 2)
    return writer, outcomes


def test_submit_nowait_tells_each_job_its_outcome_on_the_writer_thread() -> None:
    def write(jobs: list[str]) -> list[BaseException | None]:
        return [ValueError(job) if job.startswith("bad") else None for job in jobs]

    writer: GroupCommit[str] = GroupCommit(write, name="test-writer")
    outcomes = Outcomes()
    for job in ("a", "bad-b", "c"):
        writer.submit_nowait(job, outcomes.done(job))
    wait_for(lambda: len(outcomes.told) == 3, "three callbacks")
    assert {job: (type(e).__name__, name) for job, (e, name) in outcomes.told.items()} == {
        "a": ("NoneType", "test-writer"),
        "bad-b": ("ValueError", "test-writer"),
        "c": ("NoneType", "test-writer"),
    }
    assert str(outcomes.told["bad-b"][0]) == "bad-b"
    writer.close()


def test_a_raising_group_write_is_told_to_every_callback_of_the_group() -> None:
    write = Recorder(fail_on="b")
    writer, outcomes = a_then_b_and_c_queued(write)
    write.gate.set()
    wait_for(lambda: len(outcomes.told) == 3, "three callbacks")
    assert outcomes.told["a"][0] is None
    error_b, error_c = outcomes.told["b"][0], outcomes.told["c"][0]
    assert isinstance(error_b, RuntimeError) and error_b is error_c
    writer.close()


def test_close_writes_what_is_queued_then_refuses_more() -> None:
    write = Recorder()
    writer, outcomes = a_then_b_and_c_queued(write)
    closer = threading.Thread(target=writer.close)
    closer.start()
    wait_for(lambda: writer._closed, "close to begin")
    with pytest.raises(RuntimeError, match="closed"):
        writer.submit_nowait("late", outcomes.done("late"))
    assert closer.is_alive()  # waiting for the queued jobs
    write.gate.set()
    closer.join(10)
    assert not closer.is_alive()
    assert write.groups == [["a"], ["b", "c"]]  # all written before close returned
    assert {job: error for job, (error, _) in outcomes.told.items()} == dict.fromkeys("abc")
    assert writer._thread is not None and not writer._thread.is_alive()
    with pytest.raises(RuntimeError, match="closed"):
        writer.submit("later")
    writer.close()  # twice: nothing to do


def test_close_before_any_job_returns_at_once() -> None:
    writer: GroupCommit[str] = GroupCommit(Recorder())
    started = time.monotonic()
    writer.close()
    assert time.monotonic() - started < 1 and writer._thread is None
    with pytest.raises(RuntimeError):
        writer.submit("a")


def test_a_raising_callback_is_logged_and_the_writer_carries_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    write = Recorder()
    write.gate.set()
    writer: GroupCommit[str] = GroupCommit(write)

    def broken(error: BaseException | None) -> None:
        raise KeyError("a caller's bug")

    with caplog.at_level("ERROR", logger="impactwatch.collector.state.writer"):
        writer.submit_nowait("a", broken)
        writer.submit("b")  # written: the writer survived the callback
    assert write.committed == {"a", "b"}
    assert "a group commit callback failed" in caplog.text
    writer.close()


def test_count_adds_a_group_written_outside_the_writer() -> None:
    writer: GroupCommit[str] = GroupCommit(Recorder())
    writer.count(3)
    writer.count(1)
    assert (writer.groups, writer.jobs) == (2, 4)
    assert writer._thread is None  # no writer thread for that


# --- the store's group writes ---------------------------------------------------------------
def task(state: str, **kw: object) -> TaskTry:
    return TaskTry("etl", "r1", "load", -1, 1, state, **kw)  # type: ignore[arg-type]


RUN_DONE = DagRun("etl", "r1", "success", "scheduled", 100.0, 100.0, 101.0, 105.0, 111.0)
PRODUCED = AssetUpdate("s3://lake/prices", 110.0, "etl", "load", "r1", -1)
BATCHES = [
    Batch(task_tries=[task("running", start=106.0)]),
    Batch(task_tries=[task("success", start=106.0, end=110.0, queued=105.5)], dag_runs=[RUN_DONE]),
    Batch(task_tries=[task("success", end=110.0)], assets=[PRODUCED]),
    Batch(assets=[AssetUpdate("s3://lake/prices", 110.008, "etl", "load", "r1", -1)]),
]


def summarize(c: Changes) -> tuple:
    return (
        c.outcomes,
        [(r.run_id, [(t.task_id, t.state) for t in tries]) for r, tries in c.finished_runs],
        [r.state for r in c.terminal_runs],
        len(c.started_runs),
        [t.state for t in c.queued_tries],
        [t.state for t in c.succeeded_tries],
        [a.timestamp for a in c.assets],
    )


def grouped(store: Store, batches: list[Batch], first: Batch) -> list[Changes]:
    """`first` written alone while `batches` queue up, then `batches` as one group."""
    results: dict[int, Changes] = {}

    def ingest(i: int, batch: Batch) -> threading.Thread:
        thread = threading.Thread(target=lambda: results.__setitem__(i, store.ingest(batch)))
        thread.start()
        return thread

    with store._lock:  # the first group's transaction waits here
        threads = [ingest(-1, first)]
        wait_for(lambda: store.writer._busy, "the first group")
        for i, batch in enumerate(batches):
            threads.append(ingest(i, batch))
            wait_for(lambda n=i + 1: len(store.writer._queue) == n, "queued ingests")
    for t in threads:
        t.join(10)
    return [results[i] for i in range(len(batches))]


def test_a_group_tells_each_ingest_what_it_alone_would_have_seen(tmp_path: Path) -> None:
    alone = Store(make_engine(f"sqlite:///{tmp_path / 'alone.db'}"))
    alone.ingest(Batch())
    expected = [summarize(alone.ingest(b)) for b in BATCHES]
    store = Store(make_engine(f"sqlite:///{tmp_path / 'grouped.db'}"))
    got = [summarize(c) for c in grouped(store, BATCHES, Batch())]
    assert (store.writer.groups, store.writer.jobs) == (2, 1 + len(BATCHES))
    assert got == expected
    assert got[1][0] == {"updated": 1, "new": 1}  # written by the ingest before, same group
    assert got[1][1] == [("r1", [("load", "success")])]
    assert got[2][0] == {"duplicate": 1, "new": 1}  # the try again; the asset event is new
    assert got[3][0] == {"duplicate": 1}  # the same asset event, stamped 8 ms later
    assert store.summary().asset_updates == {"s3://lake/prices": 110.0}


def test_a_bad_ingest_fails_alone_and_the_rest_of_its_group_is_stored(tmp_path: Path) -> None:
    store = Store(make_engine(f"sqlite:///{tmp_path / 'state.db'}"))
    errors: list[BaseException] = []
    results: list[Changes] = []

    def ingest(batch: Batch, breaches: dict) -> None:
        try:
            results.append(store.ingest(batch, breaches=breaches))
        except Exception as exc:
            errors.append(exc)

    with store._lock:
        first = threading.Thread(target=ingest, args=(Batch(), {}))
        first.start()
        wait_for(lambda: store.writer._busy, "the first group")
        bad = threading.Thread(
            target=ingest, args=(Batch(task_tries=[task("running")]), {"k": None})
        )
        bad.start()
        wait_for(lambda: len(store.writer._queue) == 1, "the bad ingest queued")
        good = threading.Thread(target=ingest, args=(Batch(task_tries=[task("success")]), {}))
        good.start()
        wait_for(lambda: len(store.writer._queue) == 2, "the good ingest queued")
    for t in (first, bad, good):
        t.join(10)
    assert len(errors) == 1 and isinstance(errors[0], IntegrityError)
    assert [c.outcomes for c in results] == [{}, {"new": 1}]
    with store.engine.connect() as conn:
        states = conn.scalars(select(task_try_t.c.state)).all()
        assert states == ["success"]
        assert conn.scalar(select(func.count()).select_from(task_try_t)) == 1


def test_concurrent_ingests_each_count_once(tmp_path: Path) -> None:
    store = Store(make_engine(f"sqlite:///{tmp_path / 'state.db'}"))
    outcomes: list[dict[str, int]] = []
    lock = threading.Lock()

    def client(n: int) -> None:
        for i in range(30):
            t = TaskTry("etl", f"r{n}", f"t{i}", -1, 1, "success", 1.0, 2.0)
            for _ in range(2):  # sent twice: the second is a duplicate
                changes = store.ingest(Batch(task_tries=[t]))
                with lock:
                    outcomes.append(changes.outcomes)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    total: dict[str, int] = {}
    for o in outcomes:
        for k, v in o.items():
            total[k] = total.get(k, 0) + v
    assert total == {"new": 180, "duplicate": 180}
    with store.engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(task_try_t)) == 180


@pytest.mark.parametrize("dialect", ["mysql"])
def test_a_state_db_of_another_kind_is_refused_with_the_fix(dialect: str) -> None:
    from sqlalchemy.engine import make_url

    from impactwatch.collector.state.writes import StateWrites, UnsupportedStateDB

    with pytest.raises(UnsupportedStateDB, match="SQLite or PostgreSQL"):
        StateWrites(make_url(f"{dialect}://").get_dialect()())
