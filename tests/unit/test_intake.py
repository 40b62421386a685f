from __future__ import annotations

import json
import re

import pytest

from impactwatch.collector.intake.parse import MAX_EVENTS, SCHEMA, IntakeError, parse_events


def body(*events: dict, schema: str = SCHEMA) -> bytes:
    return json.dumps({"schema": schema, "events": list(events)}).encode()


TASK = {
    "type": "task_try",
    "dag_id": "risk_scoring",
    "run_id": "manual__1",
    "task_id": "publish",
    "try_number": 2,
    "state": "success",
    "start_date": "2026-11-24T06:00:00+00:00",
    "end_date": 1795500000.5,
    "cpu_seconds": 1.5,
    "peak_rss_bytes": 1048576,
}


def test_parses_all_three_event_types() -> None:
    batch = parse_events(
        body(
            TASK,
            {
                "type": "dag_run",
                "dag_id": "d",
                "run_id": "r",
                "state": "running",
                "logical_date": None,
                "start_date": "2026-11-24T06:00:00Z",
            },
            {"type": "asset", "uri": "s3://b/k", "timestamp": "2026-11-24T07:00:00+01:00"},
        )
    )
    (t,) = batch.task_tries
    assert (t.dag_id, t.task_id, t.map_index, t.try_number) == ("risk_scoring", "publish", -1, 2)
    assert t.start == 1795500000.0
    assert t.end == 1795500000.5 and t.cpu_seconds == 1.5 and t.peak_rss_bytes == 1048576
    (r,) = batch.dag_runs
    assert r.logical_date is None and r.state == "running"
    (a,) = batch.assets
    assert (
        a.timestamp
        == parse_events(
            body({"type": "asset", "uri": "s3://b/k", "timestamp": "2026-11-24T06:00:00+00:00"})
        )
        .assets[0]
        .timestamp
    )


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"[]", "JSON object"),
        (body(TASK, schema="impactwatch.events/v0"), "unsupported schema"),
        (body({**TASK, "try_number": -1}), "events[0].try_number"),
        (body({**TASK, "dag_id": ""}), "events[0].dag_id"),
        (body({**TASK, "start_date": "2026-11-24T06:00:00"}), "no UTC offset"),
        (body({"type": "nope"}), "events[0]"),
        (body(TASK, {"type": "asset"}), "events[1]"),
    ],
)
def test_rejects_bad_bodies_with_the_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(IntakeError, match=re.escape(reason)):
        parse_events(raw)


def test_rejects_oversized_batches() -> None:
    with pytest.raises(IntakeError, match="events"):
        parse_events(body(*([TASK] * (MAX_EVENTS + 1))))


def test_the_queued_time_of_a_try_is_kept() -> None:
    (t,) = parse_events(body({**TASK, "queued_date": "2026-11-24T05:59:00+00:00"})).task_tries
    assert t.queued == 1795500000.0 - 60


def test_an_asset_event_names_its_producing_task_instance() -> None:
    event = {"type": "asset", "uri": "s3://b/k", "timestamp": 1795500000.0}
    produced = {**event, "dag_id": "d", "task_id": "t", "run_id": "r", "map_index": 3}
    (a,) = parse_events(body(produced)).assets
    assert (a.dag_id, a.run_id, a.task_id, a.map_index) == ("d", "r", "t", 3)
    (api,) = parse_events(body(event)).assets
    assert not api.by_task and api.map_index is None
