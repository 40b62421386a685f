from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.exc import IntegrityError, OperationalError

from impactwatch.collector.events import ASSET_KEY_MAX, AssetUpdate, Batch, DagRun, TaskTry
from impactwatch.collector.state.merge import Changes
from impactwatch.collector.state.schema import asset_update_t
from impactwatch.collector.state.store import Breach, Store, UnsupportedStateDB, make_engine


def store_at(tmp_path: Path) -> Store:
    return Store(make_engine(f"sqlite:///{tmp_path / 'state.db'}"))


def run(state: str, end: float | None = None, clear: int = 0) -> DagRun:
    return DagRun(
        dag_id="etl",
        run_id="r1",
        state=state,
        run_type="scheduled",
        logical_date=100.0,
        run_after=100.0,
        queued_at=101.0,
        start=105.0,
        end=end,
        clear_number=clear,
    )


def task(state: str, try_number: int = 1, **kw: object) -> TaskTry:
    return TaskTry(
        dag_id="etl",
        run_id="r1",
        task_id="load",
        map_index=-1,
        try_number=try_number,
        state=state,
        **kw,
    )  # type: ignore[arg-type]


def test_a_finished_run_is_observed_once_across_sources_and_restarts(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    first = store.ingest(
        Batch(
            task_tries=[task("success", start=106.0, end=110.0, queued=105.5)],
            dag_runs=[run("success", 111.0)],
        )
    )
    assert [r.run_id for r, _ in first.finished_runs] == ["r1"]
    ((_, tries),) = first.finished_runs
    assert [t.task_id for t in tries] == ["load"]
    assert len(first.queued_tries) == 1 and len(first.succeeded_tries) == 1
    assert len(first.started_runs) == 1  # scheduled run with start and run_after: lag known
    again = store_at(tmp_path).ingest(
        Batch(
            task_tries=[task("success", start=106.0, end=110.0, queued=105.5)],
            dag_runs=[run("success", 111.0)],
        )
    )
    assert not again.finished_runs and not again.queued_tries and not again.started_runs
    assert again.outcomes == {"duplicate": 2}


def test_listener_and_poller_merge_into_one_try(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    store.ingest(Batch(task_tries=[task("success", start=106.0, end=110.0, cpu_seconds=3.0)]))
    changes = store.ingest(Batch(task_tries=[task("success", queued=105.0)]))
    assert changes.outcomes == {"updated": 1}
    assert [t.cpu_seconds for t in changes.queued_tries] == [3.0]
    assert not changes.succeeded_tries  # success was counted when the listener said so


def test_a_stale_read_never_regresses_a_terminal_state(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    store.ingest(Batch(task_tries=[task("failed", end=110.0)], dag_runs=[run("failed", 111.0)]))
    changes = store.ingest(Batch(task_tries=[task("running")], dag_runs=[run("running")]))
    assert not changes.finished_runs
    assert store.summary().last_failure == {"etl": 111.0}


def test_a_cleared_run_is_a_new_execution(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    store.ingest(Batch(dag_runs=[run("failed", 111.0)]))
    store.ingest(Batch(dag_runs=[run("queued", None, clear=1)]))
    rerun = store.ingest(Batch(dag_runs=[run("success", 130.0, clear=1)]))
    assert [(r.state, r.end) for r, _ in rerun.finished_runs] == [("success", 130.0)]
    summary = store.summary()
    assert summary.last_success == {"etl": 130.0}


def test_watermarks_breaches_and_assets_persist(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    assets = [
        AssetUpdate(uri="s3://b/k", timestamp=50.0),
        AssetUpdate(uri="s3://b/k", timestamp=60.0),
    ]
    changes = store.ingest(Batch(assets=assets), {"dag_run": "7"})
    first = Breach(1.0, "risk", "warning", "freshness", "etl", "x")
    store.save_breaches({"freshness|x|1|warning": first})
    again = Breach(2.0, "risk", "warning", "freshness", "etl", "x")
    store.save_breaches({"freshness|x|1|warning": again})  # stored already: kept as it was
    assert len(changes.assets) == 2
    store.ingest(Batch(assets=assets[:1]), {"dag_run": "9"})
    reopened = store_at(tmp_path)
    assert reopened.watermarks() == {"dag_run": "9"}
    summary = reopened.summary()
    assert summary.asset_updates == {"s3://b/k": 60.0}
    assert summary.breaches == {"freshness|x|1|warning"}
    assert reopened.breach_counts() == [(("risk", "warning", "freshness", "etl", "x"), 1)]


def test_open_runs_are_remembered_for_the_poller(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    store.ingest(
        Batch(
            dag_runs=[run("running"), DagRun(dag_id="etl", run_id="r2", state="success", end=5.0)]
        )
    )
    assert store.open_run_keys() == {("etl", "r1")}
    store.ingest(Batch(dag_runs=[DagRun(dag_id="etl", run_id="r1", state="deleted")]))
    assert store.open_run_keys() == set()


def asset_rows(store: Store) -> list[tuple]:
    with store.engine.connect() as conn:
        q = select(asset_update_t.c.uri, asset_update_t.c.timestamp, asset_update_t.c.task_id)
        return sorted(tuple(r) for r in conn.execute(q))


PRICES = "s3://lake/prices"


def produced(at: float, map_index: int = -1) -> AssetUpdate:
    return AssetUpdate(
        uri=PRICES, timestamp=at, dag_id="ingest", task_id="load", run_id="r1", map_index=map_index
    )


@pytest.mark.parametrize("listener_first", [True, False])
def test_a_tasks_asset_event_counts_once_whichever_source_comes_first(
    tmp_path: Path, listener_first: bool
) -> None:
    poller, listener = produced(1000.0), produced(1000.008)  # stamped 8 ms apart
    first, second = (listener, poller) if listener_first else (poller, listener)
    store = store_at(tmp_path)
    seen = store.ingest(Batch(assets=[first]))
    again = store.ingest(Batch(assets=[second]))
    assert seen.outcomes == {"new": 1} and seen.assets == [first]
    assert again.outcomes == {"duplicate": 1} and not again.assets
    assert asset_rows(store) == [(PRICES, first.timestamp, "load")]
    (tmp_path / "one-batch").mkdir()  # both in one batch
    one = store_at(tmp_path / "one-batch").ingest(Batch(assets=[first, second]))
    assert one.outcomes == {"new": 1, "duplicate": 1} and one.assets == [first]


def test_a_rerun_task_updates_its_asset_again_and_map_indexes_are_apart(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    store.ingest(Batch(assets=[produced(1000.0), produced(1000.0, map_index=0)]))
    rerun = store.ingest(Batch(assets=[produced(1900.0)]))  # cleared and run again
    assert rerun.outcomes == {"new": 1} and [a.timestamp for a in rerun.assets] == [1900.0]
    late = store.ingest(Batch(assets=[produced(1000.001), produced(1900.004)]))
    assert late.outcomes == {"duplicate": 2}  # the first run's twin, late; the re-run's twin
    assert asset_rows(store) == [(PRICES, 1000.0, "load"), (PRICES, 1900.0, "load")]
    assert store.summary().asset_updates == {PRICES: 1900.0}


def test_asset_events_from_outside_a_task_keep_their_timestamp_key(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    api = [AssetUpdate(uri=PRICES, timestamp=1000.0), AssetUpdate(uri=PRICES, timestamp=1000.008)]
    assert store.ingest(Batch(assets=api)).outcomes == {"new": 2}
    assert store.ingest(Batch(assets=api[:1])).outcomes == {"duplicate": 1}
    assert len(asset_rows(store)) == 2


def test_the_longest_ids_make_a_key_that_fits_the_column() -> None:
    longest = AssetUpdate(
        uri="s3://" + "u" * 1495,
        timestamp=1.0,
        dag_id="d" * 250,
        task_id="t" * 250,
        run_id="r" * 250,
        map_index=12345,
    )
    shorter = AssetUpdate(
        uri="s3://" + "u" * 1495,
        timestamp=2.0,
        dag_id="d" * 250,
        task_id="t" * 250,
        run_id="r" * 250,
        map_index=12346,
    )
    assert len(longest.key) <= ASSET_KEY_MAX
    assert longest.key != shorter.key
    assert longest.key == AssetUpdate(**{f: getattr(longest, f) for f in FIELDS}).key


FIELDS = ("uri", "timestamp", "dag_id", "task_id", "run_id", "map_index")


# --- write: the writer's groups, one transaction, a bad batch failing alone ---------------------
def assets(*uris: str) -> Batch:
    return Batch(assets=[AssetUpdate(uri=uri, timestamp=1000.0) for uri in uris])


def changes_of(got: list[Changes | Exception]) -> list[Changes]:
    assert all(isinstance(c, Changes) for c in got), got
    return [c for c in got if isinstance(c, Changes)]


def test_a_group_is_written_in_one_transaction_with_its_watermarks(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    got = store.write(
        [
            (assets("s3://a"), None),
            (assets("s3://b", "s3://c"), {"dag_run": "4"}),
            (assets("s3://a", "s3://d"), {"dag_run": "5"}),  # s3://a again, in the same group
        ]
    )
    assert [c.outcomes for c in changes_of(got)] == [
        {"new": 1},
        {"new": 2},
        {"duplicate": 1, "new": 1},
    ]
    assert [a.uri for a in changes_of(got)[1].assets] == ["s3://b", "s3://c"]
    assert store.watermarks() == {"dag_run": "5"}  # the later one wins
    assert len(store.summary().asset_updates) == 4


def test_a_bad_batch_fails_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = store_at(tmp_path)
    commits: list[int] = []
    commit = store._commit

    def counting(writes: list, stage: object = None) -> list:
        commits.append(len(writes))
        return commit(writes, stage)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "_commit", counting)
    no_time = Batch(assets=[AssetUpdate(uri="s3://bad", timestamp=None)])  # type: ignore[arg-type]
    got = store.write(
        [(assets("s3://a"), None), (no_time, None), (assets("s3://b", "s3://c"), None)]
    )
    assert commits == [3, 1, 1, 1]  # the group, rolled back; then each batch alone
    assert isinstance(got[1], IntegrityError)
    first, last = changes_of([got[0], got[2]])
    assert first.outcomes == {"new": 1} and last.outcomes == {"new": 2}
    assert sorted(store.summary().asset_updates) == ["s3://a", "s3://b", "s3://c"]
    assert [c.outcomes for c in changes_of(store.write([(assets("s3://d"), None)]))] == [{"new": 1}]


def test_a_failed_group_returns_its_error_for_each_of_its_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = store_at(tmp_path)
    down = OperationalError("INSERT ...", None, Exception("disk I/O error"))

    def failing(*args: object) -> list:
        raise down

    monkeypatch.setattr(store, "_commit", failing)
    assert store.write([(assets("s3://a"), None), (assets("s3://b"), None)]) == [down, down]
    monkeypatch.undo()
    assert [c.outcomes for c in changes_of(store.write([(assets("s3://a"), None)]))] == [{"new": 1}]


def test_a_state_db_other_than_sqlite_or_postgresql_is_refused() -> None:
    engine = create_engine("mysql://nobody@127.0.0.1/none", module=sqlite3)
    with pytest.raises(UnsupportedStateDB, match="SQLite or PostgreSQL"):
        Store(engine)


# --- DAGs Airflow does not know: stored, held out of the metrics until the poller's sighting ---
def held(batch: Batch) -> Batch:
    batch.held_dags = frozenset(batch.dag_ids())
    return batch


def test_a_held_dags_events_are_stored_but_not_observed(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    seen = store.ingest(
        held(
            Batch(
                task_tries=[task("success", start=106.0, end=110.0, queued=105.5)],
                dag_runs=[run("success", 111.0)],
            )
        )
    )
    assert seen.outcomes == {"unknown_dag": 2}
    assert not (seen.finished_runs or seen.terminal_runs or seen.started_runs)
    assert not (seen.queued_tries or seen.succeeded_tries)
    summary = store.summary()  # what a restart restores: nothing of the held DAG
    assert summary.last_success == {} and summary.task_success == {}
    again = store.ingest(held(Batch(dag_runs=[run("success", 111.0)])))
    assert again.outcomes == {"unknown_dag": 1} and not again.terminal_runs


def test_the_pollers_sighting_of_held_events_observes_each_once(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    listener = Batch(
        task_tries=[task("success", start=106.0, end=110.0, queued=105.5, cpu_seconds=2.0)],
        dag_runs=[run("success", 111.0)],
    )
    store.ingest(held(listener))
    poller = Batch(
        task_tries=[task("success", start=106.0, end=110.0, queued=105.5)],
        dag_runs=[run("success", 111.0)],
    )
    seen = store.ingest(poller)  # the same facts, the DAG now known: observed now
    assert [r.run_id for r in seen.terminal_runs] == ["r1"]
    ((_, tries),) = seen.finished_runs
    assert tries[0].cpu_seconds == 2.0  # the listener's measure kept
    assert len(seen.queued_tries) == 1 and len(seen.succeeded_tries) == 1
    assert len(seen.started_runs) == 1
    assert store.summary().last_success == {"etl": 111.0}
    twice = store.ingest(poller)
    assert twice.outcomes == {"duplicate": 2} and not twice.finished_runs


def test_a_try_the_poller_observed_is_never_held(tmp_path: Path) -> None:
    """The poller read it from Airflow, so Airflow knows its DAG: the listener's later measure
    (a DAG list read before the DAG existed) merges as usual and stays restorable."""
    store = store_at(tmp_path)
    store.ingest(Batch(task_tries=[task("success", start=106.0, end=110.0)]))
    seen = store.ingest(held(Batch(task_tries=[task("success", cpu_seconds=1.0)])))
    assert seen.outcomes == {"updated": 1}
    assert store.summary().task_success == {("etl", "load"): 110.0}
