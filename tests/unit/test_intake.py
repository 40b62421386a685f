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


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("cpu_seconds", float("nan"), "events[0].cpu_seconds: not a finite number"),
        ("duration", float("inf"), "events[0].duration: not a finite number"),
        ("end_date", float("inf"), "events[0].end_date: not a finite number"),
        ("start_date", float("nan"), "events[0].start_date: not a finite number"),
        ("requested_cpu", float("-inf"), "events[0].requested_cpu: not a finite number"),
        ("map_index", 2**31, "events[0].map_index: Input should be less than or equal"),
        ("map_index", -2, "events[0].map_index"),
        ("try_number", 2**64, "events[0].try_number"),
        ("peak_rss_bytes", 2**51, "events[0].peak_rss_bytes"),
        ("dag_id", "d\x00", "events[0].dag_id: only letters, digits"),
        ("task_id", "has space", "events[0].task_id: only letters, digits"),
        ("run_id", "r\x1f1", "events[0].run_id: control characters"),
        ("operator", "Op\x7f", "events[0].operator: control characters"),
        ("pool", "p" * 257, "events[0].pool: String should have at most 256"),
        ("queue", "q" * 257, "events[0].queue: String should have at most 256"),
        ("run_id", "r" * 251, "events[0].run_id: String should have at most 250"),
        ("end_date", "9999-12-31T23:59:59-23:00", "events[0].end_date: outside 1970"),
        ("end_date", "0001-01-01T00:00:00+14:00", "events[0].end_date: outside 1970"),
        ("end_date", 1e300, "events[0].end_date: outside 1970"),
        ("queued_date", -0.5, "events[0].queued_date: outside 1970"),
        ("end_date", "tomorrow", "events[0].end_date: 'tomorrow' is not an ISO 8601 time"),
        ("end_date", True, "events[0].end_date: a time is ISO 8601"),
    ],
)
def test_each_value_out_of_bounds_is_refused_naming_its_field(
    field: str, value: object, reason: str
) -> None:
    with pytest.raises(IntakeError, match=re.escape(reason)):
        parse_events(body({**TASK, field: value}))


def test_the_bounds_are_the_columns_and_hold_at_their_edge() -> None:
    edge = {
        **TASK,
        "dag_id": "d" * 250,
        "pool": "p" * 256,
        "map_index": 2**31 - 1,
        "end_date": "2100-01-01T00:00:00Z",
        "start_date": 0,
        "run_id": "scheduled__2026-11-24T06:00:00+00:00 ünïcode",
    }
    (t,) = parse_events(body(edge)).task_tries
    assert (len(t.dag_id), len(t.pool or ""), t.map_index) == (250, 256, 2**31 - 1)
    assert t.end == 4102444800.0 and t.start == 0.0


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"schema": "%s", "events": [%s]}' % (SCHEMA.encode(), b"9" * 5000), "body: not JSON"),
        (b'{"schema": "%s", "events": %s}' % (SCHEMA.encode(), b"[" * 100_000), "body: not JSON"),
        (b'{"schema": "%s", "x": "\\udc00"}' % SCHEMA.encode(), "body: not JSON"),
        (b'{"schema": "\xff"}', "body: not JSON"),
        (b'{"schema": "%s", "events": [{"type": "asset", "uri": "u", "timestamp": NaN}]}'
         % SCHEMA.encode(), "events[0].timestamp: not a finite number"),
    ],
)  # fmt: skip
def test_what_json_loads_would_raise_on_is_a_clear_refusal(raw: bytes, reason: str) -> None:
    """Huge integers, deep nesting, lone surrogates and bad UTF-8: no exception but IntakeError."""
    with pytest.raises(IntakeError, match=re.escape(reason)):
        parse_events(raw)


def test_a_failed_trys_error_type_is_kept_and_bounded() -> None:
    event = {"type": "task_try", "dag_id": "d", "run_id": "r", "task_id": "t", "try_number": 2}
    event.update(state="failed", error_type="ConnectionError")
    batch = parse_events(json.dumps({"schema": SCHEMA, "events": [event]}).encode())
    assert batch.task_tries[0].error_type == "ConnectionError"
    for bad, reason in [("x" * 251, "at most 250"), ("a\nb", "control characters")]:
        body = json.dumps({"schema": SCHEMA, "events": [{**event, "error_type": bad}]}).encode()
        with pytest.raises(IntakeError, match=re.escape("events[0].error_type")) as err:
            parse_events(body)
        assert reason in str(err.value)
