from __future__ import annotations

from pathlib import Path

from impactwatch.collector.events import AssetUpdate, Batch, DagRun, TaskTry
from impactwatch.collector.store import Store, make_engine


def store_at(tmp_path: Path) -> Store:
    return Store(make_engine(f"sqlite:///{tmp_path / 'state.db'}"))


def run(state: str, end: float | None = None, clear: int = 0) -> DagRun:
    return DagRun("etl", "r1", state, "scheduled", 100.0, 100.0, 101.0, 105.0, end, clear)


def task(state: str, try_number: int = 1, **kw: object) -> TaskTry:
    return TaskTry("etl", "r1", "load", -1, try_number, state, **kw)  # type: ignore[arg-type]


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
    assets = [AssetUpdate("s3://b/k", 50.0), AssetUpdate("s3://b/k", 60.0)]
    changes = store.ingest(Batch(assets=assets), {"dag_run": "7"}, {"freshness|x|1|warning": 1.0})
    assert len(changes.assets) == 2
    store.ingest(Batch(assets=assets[:1]), {"dag_run": "9"})
    reopened = store_at(tmp_path)
    assert reopened.watermarks() == {"dag_run": "9"}
    summary = reopened.summary()
    assert summary.asset_updates == {"s3://b/k": 60.0}
    assert summary.breaches == {"freshness|x|1|warning"}


def test_open_runs_are_remembered_for_the_poller(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    store.ingest(Batch(dag_runs=[run("running"), DagRun("etl", "r2", "success", end=5.0)]))
    assert store.open_run_keys() == {("etl", "r1")}
    store.ingest(Batch(dag_runs=[DagRun("etl", "r1", "deleted")]))
    assert store.open_run_keys() == set()
