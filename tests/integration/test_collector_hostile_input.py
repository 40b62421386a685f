"""Hostile input at the collector's intake, on a real server with real state DBs (SQLite and
PostgreSQL), as an authenticated but careless or malicious sender would post it: every bad value
is a 400 naming the field, nothing of it stored, each refusal counted by reason; DAG ids Airflow
does not know make no series, before or after a restart, until the poller sees the DAG."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.exc import DataError

from impactwatch.catalog.loader import load_catalog
from impactwatch.collector.intake.parse import SCHEMA
from impactwatch.collector.metrics.state import DagInfo
from impactwatch.collector.service import CollectorService
from impactwatch.collector.settings import CollectorSettings
from impactwatch.collector.state.schema import dag_run_t, task_try_t
from impactwatch.devtools.airflow_home import reader_db_url
from tests.integration.helpers import EXAMPLE_CATALOG, catch_up, make_service, registry, serving
from tests.support.postgres import create_database, drop_database

pytestmark = pytest.mark.integration

TOKEN = "hostile-input-token"
EVENTS = "impactwatch_collector_events_total"
START = 1795500000.0


def build(tmp_path: Path, state_db: str) -> CollectorService:
    config = CollectorSettings(
        airflow_db=f"sqlite:///{tmp_path / 'airflow-never-read.db'}",
        state_db=state_db,
        catalog=str(EXAMPLE_CATALOG),
    )
    service = CollectorService(config, load_catalog(EXAMPLE_CATALOG))
    assert service.wait_ready(60), "the collector did not restore its state"
    return service


@pytest.fixture
def state_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state.db'}"
        return
    base = request.getfixturevalue("pg_base_url")
    name = f"impactwatch_hostile_{uuid.uuid4().hex[:8]}"
    url = create_database(base, name)
    try:
        yield reader_db_url(url)
    finally:
        drop_database(base, name)


@pytest.fixture
def service(state_db: str, tmp_path: Path) -> Iterator[CollectorService]:
    service = build(tmp_path, state_db)
    try:
        yield service
    finally:
        service.close()


def call(base: str, body: bytes, token: str = TOKEN) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(f"{base}/v1/events", data=body, method="POST")
    request.add_header("Authorization", f"Bearer {token}")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def metrics(base: str) -> str:
    with urllib.request.urlopen(f"{base}/metrics", timeout=30) as resp:
        return str(resp.read().decode())


def body(*events: dict[str, Any]) -> bytes:
    return json.dumps({"schema": SCHEMA, "events": list(events)}).encode()


def task_try(**fields: Any) -> dict[str, Any]:
    event = {
        "type": "task_try",
        "dag_id": "nightly_heavy_etl",
        "run_id": "manual__1",
        "task_id": "transform_ledger",
        "try_number": 1,
        "state": "success",
        "start_date": START,
        "end_date": START + 60,
        "queued_date": START - 5,
    }
    return {**event, **fields}


def dag_run(**fields: Any) -> dict[str, Any]:
    event = {
        "type": "dag_run",
        "dag_id": "nightly_heavy_etl",
        "run_id": "manual__1",
        "state": "success",
        "run_type": "manual",
        "start_date": START,
        "end_date": START + 120,
    }
    return {**event, **fields}


def airflow_rows(url: str, query: str) -> list[Any]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(text(query)))
    finally:
        engine.dispose()


def rows(service: CollectorService) -> int:
    with service.store.engine.connect() as conn:
        tries = conn.scalar(select(func.count()).select_from(task_try_t)) or 0
        runs = conn.scalar(select(func.count()).select_from(dag_run_t)) or 0
    return tries + runs


def counted(service: CollectorService, outcome: str) -> float:
    labels = {"source": "listener", "outcome": outcome}
    return registry(service).get_sample_value(EVENTS, labels) or 0.0


S = SCHEMA.encode()
BAD: list[tuple[str, bytes, str]] = [
    ("NaN", body(task_try(cpu_seconds=float("nan"))), "events[0].cpu_seconds: not a finite"),
    ("Infinity", body(dag_run(end_date=float("inf"))), "events[0].end_date: not a finite"),
    ("-Infinity", body(task_try(), task_try(duration=-float("inf"))), "events[1].duration"),
    ("NaN time", body(task_try(start_date=float("nan"))), "events[0].start_date: not a finite"),
    ("int over column", body(task_try(map_index=2**40)), "events[0].map_index"),
    ("int over int64", body(task_try(try_number=2**63)), "events[0].try_number"),
    ("clear_number", body(dag_run(clear_number=2**31)), "events[0].clear_number"),
    ("bytes over 1 PiB", body(task_try(peak_rss_bytes=2**60)), "events[0].peak_rss_bytes"),
    ("NUL in an id", body(task_try(dag_id="a\x00b")), "events[0].dag_id"),
    ("NUL in run_id", body(dag_run(run_id="r\x00")), "events[0].run_id: control characters"),
    ("newline in pool", body(task_try(pool="a\nb")), "events[0].pool: control characters"),
    ("pool over column", body(task_try(pool="p" * 257)), "events[0].pool: String should have"),
    ("dag_id over column", body(task_try(dag_id="d" * 251)), "events[0].dag_id"),
    ("run_id over column", body(dag_run(run_id="r" * 251)), "events[0].run_id"),
    ("year 9999", body(dag_run(end_date="9999-12-31T23:59:59-23:00")), "events[0].end_date"),
    ("1e300", body(task_try(end_date=1e300)), "events[0].end_date: outside"),
    ("before 1970", body(task_try(start_date=-1.0)), "events[0].start_date: outside"),
    ("5000 digits", b'{"schema":"%s","events":[%s]}' % (S, b"9" * 5000), "body: not JSON"),
    ("deep nesting", b'{"schema":"%s","events":%s}' % (S, b"[" * 200_000), "body: not JSON"),
    ("lone surrogate", b'{"schema":"%s","x":"\\ud800"}' % S, "body: not JSON"),
]


@pytest.mark.parametrize("state_db", ["sqlite", "postgresql"], indirect=True)
def test_every_bad_value_is_a_400_naming_its_field_stored_nowhere_and_counted(
    service: CollectorService,
) -> None:
    with serving(service, TOKEN, max_body=2_000_000) as base:
        for what, raw, reason in BAD:
            status, answer = call(base, raw)
            assert status == 400, (what, answer)
            assert answer["error"].startswith(reason), (what, answer)
        # the same events within their bounds are stored: the limits are the columns'
        edge = task_try(pool="p" * 256, map_index=2**31 - 1, end_date="2099-12-31T23:59:59Z")
        status, answer = call(base, body(edge, dag_run(run_id="r" * 250)))
        assert status == 202, answer
        text = metrics(base)
    assert rows(service) == 2
    assert counted(service, "invalid") == len(BAD)
    assert f'{EVENTS}{{outcome="invalid",source="listener"}} {float(len(BAD))}' in text
    assert "NaN" not in text and "Inf " not in text


@pytest.mark.parametrize("state_db", ["sqlite"], indirect=True)
def test_a_batch_the_state_db_refuses_is_a_400_not_a_503_retried_for_ever(
    service: CollectorService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A value the bounds let through but the DB refuses: retrying could never succeed."""

    def refuse(*args: object) -> None:
        raise DataError("INSERT ...", None, Exception("value out of range"))

    with serving(service, TOKEN) as base:
        monkeypatch.setattr(service.store, "_commit", refuse)
        status, answer = call(base, body(task_try()))
        monkeypatch.undo()
        assert status == 400 and "refused" in answer["error"]
        assert call(base, body(task_try()))[0] == 202  # the writer goes on
    assert counted(service, "store_refused") == 1


@pytest.mark.parametrize("state_db", ["sqlite", "postgresql"], indirect=True)
def test_invented_dag_ids_make_no_series_before_or_after_a_restart(
    service: CollectorService, state_db: str, tmp_path: Path
) -> None:
    service.state.set_dags({"nightly_heavy_etl": DagInfo()})  # what the poller read of Airflow
    invented = [
        event
        for n in range(2000)
        for event in (
            dag_run(dag_id=f"made_up_{n}", run_id="r", run_type="scheduled", run_after=START),
            task_try(dag_id=f"made_up_{n}", run_id="r", pool=f"pool_{n}"),
        )
    ]
    with serving(service, TOKEN, max_body=2_000_000) as base:
        before = metrics(base).count("\n")
        status, answer = call(base, body(*invented))
        assert status == 202 and answer["outcomes"] == {"unknown_dag": 4000}
        known = call(base, body(dag_run(), task_try()))
        assert known == (202, {"accepted": 2, "outcomes": {"new": 2}})
        text = metrics(base)
    assert "made_up_" not in text and 'pool="pool_' not in text
    assert text.count("\n") - before < 100  # the known DAG's series, not 4,000 events' worth
    assert 'dag_id="nightly_heavy_etl"' in text
    assert rows(service) == 4002  # stored all the same: nothing is lost
    assert counted(service, "unknown_dag") == 4000
    service.close()

    again = build(tmp_path, state_db)  # a restart on the same state DB, before any poll
    try:
        with serving(again, TOKEN) as base:
            text = metrics(base)
        assert "made_up_" not in text
        assert 'impactwatch_dag_run_last_success_timestamp_seconds{dag_id="nightly_heavy_etl"' in (
            text
        )
    finally:
        again.close()


def test_listener_events_of_a_dag_not_yet_polled_count_once_when_the_poller_reads_it(
    airflow_sqlite_url: str, tmp_path: Path
) -> None:
    """A fresh collector knows no DAG yet: the listener's events of a real run are held, and
    the poller's read of the same run, with the DAG list, observes them exactly once."""
    service = make_service(airflow_sqlite_url, tmp_path)
    try:
        (run,) = airflow_rows(
            airflow_sqlite_url,
            "SELECT dag_id, run_id, run_type FROM dag_run "
            "WHERE state = 'success' AND dag_id = 'nightly_heavy_etl' LIMIT 1",
        )
        seen = dag_run(dag_id=run.dag_id, run_id=run.run_id, run_type=run.run_type)
        with serving(service, TOKEN) as base:
            status, answer = call(base, body(seen))
            assert status == 202 and answer["outcomes"] == {"unknown_dag": 1}
            assert 'duration_seconds_count{dag_id="nightly_heavy_etl"' not in metrics(base)
            catch_up(service)
            text = metrics(base)
        labels = {"dag_id": run.dag_id, "team": service.state.team(run.dag_id), "state": "success"}
        runs = registry(service).get_sample_value(
            "impactwatch_dag_run_duration_seconds_count", labels
        )
        ((truth,),) = airflow_rows(
            airflow_sqlite_url,
            "SELECT count(*) FROM dag_run WHERE dag_id = 'nightly_heavy_etl' "
            "AND state = 'success' AND end_date IS NOT NULL",
        )
        assert runs == truth  # the held run counted once, by the poller's sighting
        assert 'duration_seconds_count{dag_id="nightly_heavy_etl"' in text
    finally:
        service.close()
