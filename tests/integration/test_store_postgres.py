"""The event store on a real PostgreSQL: upserts, key lengths, group commit, a dropped session."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import func, select

from impactwatch.collector.events import AssetUpdate, Batch, DagRun, TaskTry
from impactwatch.collector.state.schema import asset_update_t
from impactwatch.collector.state.store import Store, make_engine, task_try_t
from impactwatch.devtools.airflow_home import reader_db_url
from tests.support.postgres import create_database, drop_database

pytestmark = pytest.mark.integration


@pytest.fixture
def pg_store(pg_base_url: str) -> Iterator[tuple[Store, str]]:
    name = f"impactwatch_store_{uuid.uuid4().hex[:8]}"
    url = create_database(pg_base_url, name)
    store = Store(make_engine(reader_db_url(url)))
    try:
        yield store, name
    finally:
        store.close()
        drop_database(pg_base_url, name)


def count(store: Store, table: object) -> int:
    with store.engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(table))  # type: ignore[arg-type]


def test_listener_and_poller_events_merge_once_on_postgres(pg_store: tuple[Store, str]) -> None:
    store, _ = pg_store
    long_uri = "s3://lake/" + "p" * 1490  # the longest URI, with the longest ids: a hashed key
    tries = [
        TaskTry(
            dag_id="etl",
            run_id="r1",
            task_id="load",
            map_index=-1,
            try_number=1,
            state="running",
            start=1.0,
        )
    ]
    produced = [
        AssetUpdate(
            uri=long_uri,
            timestamp=5.0,
            dag_id="d" * 250,
            task_id="t" * 250,
            run_id="r" * 250,
            map_index=7,
        ),
        AssetUpdate(
            uri="s3://lake/prices",
            timestamp=5.0,
            dag_id="etl",
            task_id="load",
            run_id="r1",
            map_index=-1,
        ),
    ]
    first = store.ingest(Batch(task_tries=tries, assets=produced), {"dag_run": "1"})
    assert first.outcomes == {"new": 3}
    later = [
        AssetUpdate(
            uri=a.uri,
            timestamp=a.timestamp + 0.008,
            dag_id=a.dag_id,
            task_id=a.task_id,
            run_id=a.run_id,
            map_index=a.map_index,
        )
        for a in produced
    ]
    run = DagRun(
        dag_id="etl",
        run_id="r1",
        state="success",
        run_type="manual",
        logical_date=None,
        run_after=0.5,
        queued_at=0.6,
        start=1.0,
        end=9.0,
    )
    done = TaskTry(
        dag_id="etl",
        run_id="r1",
        task_id="load",
        map_index=-1,
        try_number=1,
        state="success",
        start=1.0,
        end=8.0,
        cpu_seconds=2.0,
    )
    second = store.ingest(Batch([done], [run], later), {"dag_run": "2"})
    assert second.outcomes == {"updated": 1, "new": 1, "duplicate": 2}
    ((finished, its_tries),) = second.finished_runs
    assert finished.run_id == "r1" and [(t.state, t.cpu_seconds) for t in its_tries] == [
        ("success", 2.0)
    ]
    assert store.watermarks() == {"dag_run": "2"}
    assert count(store, asset_update_t) == 2


def test_concurrent_ingests_on_postgres_each_count_once(pg_store: tuple[Store, str]) -> None:
    store, _ = pg_store
    totals: dict[str, int] = {}
    lock = threading.Lock()

    def client(n: int) -> None:
        for i in range(25):
            t = TaskTry(
                dag_id="etl",
                run_id=f"r{n}",
                task_id=f"t{i}",
                map_index=-1,
                try_number=1,
                state="success",
                start=1.0,
                end=2.0,
            )
            for _ in range(2):
                outcomes = store.ingest(Batch(task_tries=[t])).outcomes
                with lock:
                    for k, v in outcomes.items():
                        totals[k] = totals.get(k, 0) + v

    threads = [threading.Thread(target=client, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert totals == {"new": 150, "duplicate": 150}
    assert count(store, task_try_t) == 150


def test_a_dropped_session_costs_no_ingest(pg_base_url: str, pg_store: tuple[Store, str]) -> None:
    """Pooled connections are not pinged on checkout: a dead one is replaced and the group
    written again."""
    store, name = pg_store
    store.ingest(
        Batch(
            task_tries=[
                TaskTry(
                    dag_id="etl",
                    run_id="r1",
                    task_id="a",
                    map_index=-1,
                    try_number=1,
                    state="success",
                )
            ]
        )
    )
    with psycopg.connect(f"{pg_base_url}/postgres", autocommit=True) as admin:
        ended = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = %s",
            (name,),
        ).fetchone()
    assert ended and ended[0] >= 1  # the store's pooled session is gone
    changes = store.ingest(
        Batch(
            task_tries=[
                TaskTry(
                    dag_id="etl",
                    run_id="r1",
                    task_id="b",
                    map_index=-1,
                    try_number=1,
                    state="success",
                )
            ]
        )
    )
    assert changes.outcomes == {"new": 1}
    assert count(store, task_try_t) == 2
