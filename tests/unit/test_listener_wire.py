"""The plugin's payloads are what the collector's intake parses (the wire format is pinned here)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from types import SimpleNamespace

import pytest

from impactwatch.airflow_listeners import wire
from impactwatch.collector.intake.parse import SCHEMA, parse_events

START = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
END = START + timedelta(seconds=12.5)


class State(StrEnum):  # Airflow's states are str enums
    SUCCESS = "success"
    UP_FOR_RETRY = "up_for_retry"


def runtime_ti(**over: object) -> SimpleNamespace:
    """Shaped like the task runner's RuntimeTaskInstance: pool and operator live on `task`."""
    fields = {
        "dag_id": "risk_scoring",
        "run_id": "asset_triggered__2026-11-24",
        "task_id": "score_customers",
        "map_index": 2,
        "try_number": 1,
        "state": State.SUCCESS,
        "start_date": START,
        "end_date": END,
        "queue": "default",
        "hostname": "worker-1",
        "task": SimpleNamespace(pool="heavy_etl", task_type="_PythonDecoratedOperator"),
    }
    fields.update(over)
    return SimpleNamespace(**fields)


class FakeOrmState:
    def __init__(self, unloaded: set[str]) -> None:
        self.unloaded = unloaded


class OrmTaskInstance:
    """Shaped like the ORM TaskInstance; reading an unloaded attribute would query the DB."""

    def __init__(self, unloaded: set[str]) -> None:
        self._sa_instance_state = FakeOrmState(unloaded)
        self.dag_id, self.run_id, self.task_id = "d", "r", "t"
        self.map_index, self.try_number = -1, 3
        self.state = State.UP_FOR_RETRY
        self.start_date = START.replace(tzinfo=None)  # naive = UTC
        self.end_date = END.replace(tzinfo=None)
        self.duration = 12.5
        self.pool, self.queue, self.operator = "default_pool", "q", "BashOperator"
        self.hostname = "h"
        self.task = None

    @property
    def queued_dttm(self) -> datetime:
        raise AssertionError("an unloaded attribute was read: that is a query in the scheduler")


def parsed(*events: wire.Event | None):  # type: ignore[no-untyped-def]
    body = wire.encode(e for e in events if e is not None)
    assert json.loads(body)["schema"] == SCHEMA == wire.SCHEMA
    return parse_events(body)


def test_a_task_try_from_the_task_runner_parses_with_every_measured_field() -> None:
    event = wire.task_try(runtime_ti(), "success", cpu_seconds=3.25, peak_rss_bytes=104857600)
    (t,) = parsed(event).task_tries
    assert (t.dag_id, t.run_id, t.task_id, t.map_index, t.try_number) == (
        "risk_scoring",
        "asset_triggered__2026-11-24",
        "score_customers",
        2,
        1,
    )
    assert t.state == "success"
    assert t.start == START.timestamp() and t.end == END.timestamp()
    assert t.duration == 12.5
    assert (t.pool, t.queue, t.operator) == ("heavy_etl", "default", "_PythonDecoratedOperator")
    assert t.cpu_seconds == 3.25 and t.peak_rss_bytes == 104857600


def test_an_orm_task_instance_is_read_without_touching_unloaded_attributes() -> None:
    event = wire.task_try(OrmTaskInstance(unloaded={"queued_dttm"}), "failed")
    assert event is not None and "queued_date" not in event
    (t,) = parsed(event).task_tries
    assert t.try_number == 3 and t.state == "failed"
    assert t.start == START.timestamp() and t.duration == 12.5
    assert (t.pool, t.operator) == ("default_pool", "BashOperator")
    assert t.cpu_seconds is None


class ExpiredRun:
    """An ORM DagRun whose `state` (a synonym of the `_state` column) is expired."""

    _sa_instance_state = FakeOrmState({"_state", "end_date"})
    dag_id, run_id, start_date = "d", "r", START

    @property
    def state(self) -> str:
        raise AssertionError("an expired attribute was read: that is a query in the scheduler")

    @property
    def end_date(self) -> datetime:
        raise AssertionError("an expired attribute was read: that is a query in the scheduler")


def test_synonym_columns_count_as_unloaded_by_their_private_name() -> None:
    event = wire.dag_run(ExpiredRun())
    assert event is not None and "state" not in event and "end_date" not in event
    (r,) = parsed(event).dag_runs
    assert r.start == START.timestamp() and r.end is None


def test_a_dag_run_carries_run_type_interval_trigger_and_duration() -> None:
    run = SimpleNamespace(
        dag_id="market_data_ingest",
        run_id="scheduled__2026-11-24T05:00:00+00:00",
        state="success",
        run_type=SimpleNamespace(value="scheduled"),
        logical_date=START,
        run_after=START + timedelta(hours=1),
        queued_at=START + timedelta(hours=1, seconds=1),
        start_date=START + timedelta(hours=1, seconds=2),
        end_date=START + timedelta(hours=1, seconds=62),
        clear_number=1,
        data_interval_start=START,
        data_interval_end=START + timedelta(hours=1),
        triggered_by=SimpleNamespace(value="timetable"),
    )
    event = wire.dag_run(run)
    assert event is not None
    assert event["duration"] == 60.0 and event["triggered_by"] == "timetable"
    assert event["data_interval_end"] == (START + timedelta(hours=1)).timestamp()
    (r,) = parsed(event).dag_runs
    assert (r.state, r.run_type, r.clear_number) == ("success", "scheduled", 1)
    assert r.logical_date == START.timestamp() and r.end == r.start + 60


def test_a_manual_run_without_logical_date_parses() -> None:
    run = SimpleNamespace(dag_id="d", run_id="manual__x", run_type="manual", logical_date=None)
    (r,) = parsed(wire.dag_run(run, "running")).dag_runs
    assert r.logical_date is None and r.state == "running"


def test_an_asset_event_carries_uri_time_and_source() -> None:
    event = SimpleNamespace(
        asset=SimpleNamespace(uri="s3://fintech-lake/market/prices", name="market_data"),
        source_dag_id="market_data_ingest",
        source_task_id="publish_market_data",
        source_run_id="r1",
        source_map_index=-1,
    )
    (a,) = parsed(wire.asset(event, 1795500000.25)).assets
    assert (a.uri, a.timestamp, a.dag_id, a.task_id, a.run_id) == (
        "s3://fintech-lake/market/prices",
        1795500000.25,
        "market_data_ingest",
        "publish_market_data",
        "r1",
    )


def test_values_beyond_the_intake_limits_are_cut_or_clamped_never_rejected() -> None:
    ti = runtime_ti(
        dag_id="d" * 400,
        hostname="h" * 5000,
        start_date=END,
        end_date=START,  # a skewed clock: negative duration
    )
    ti.task.pool = "p" * 5000
    event = wire.task_try(ti, "x" * 100, cpu_seconds=-1.0, peak_rss_bytes=-5)
    (t,) = parsed(event).task_tries
    assert len(t.dag_id) == wire.ID_MAX and len(t.pool or "") == wire.POOL_MAX
    assert t.duration == 0.0 and t.cpu_seconds == 0.0 and t.peak_rss_bytes == 0


@pytest.mark.parametrize(
    "obj",
    [None, object(), SimpleNamespace(dag_id="d", run_id="r", task_id="t", try_number=None)],
)
def test_objects_without_a_key_make_no_event(obj: object) -> None:
    assert wire.task_try(obj) is None
    assert wire.dag_run(SimpleNamespace(dag_id="d")) is None
    assert wire.asset(SimpleNamespace(asset=None), 1.0) is None


def test_epoch_reads_aware_and_naive_datetimes_as_utc() -> None:
    assert wire.epoch(START) == wire.epoch(START.replace(tzinfo=None)) == 1795500000.0
    assert wire.epoch(None) is None and wire.epoch("2026") is None and wire.epoch(True) is None
