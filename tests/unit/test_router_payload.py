from __future__ import annotations

import json

import pytest

from impactwatch.router.payload import PayloadError, fingerprint_of, parse_notification
from tests.unit.test_router_support import T0, alert, body


def test_a_canned_alertmanager_notification_becomes_typed_alerts() -> None:
    raw = body([alert(dataset="market_data", team="markets"), alert("X", status="resolved")])
    parsed = parse_notification(raw, T0)
    assert parsed.status == "firing" and parsed.receiver == "impactwatch-router"
    first, second = parsed.alerts
    assert first.label("dataset") == "market_data"
    assert first.starts_at == pytest.approx(T0 - 600 + 0.000123, abs=1e-3)  # nanoseconds read
    assert first.ends_at is None  # Go's zero time: not set
    assert second.status == "resolved" and second.ends_at == pytest.approx(T0 + 3000, abs=1)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{oops", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (json.dumps({"version": "3", "alerts": []}).encode(), "version '3'"),
        (json.dumps({"alerts": []}).encode(), "version None"),
        (json.dumps({"version": "4", "status": "firing"}).encode(), "alerts: Field required"),
        (
            json.dumps({"version": "4", "status": "firing", "alerts": [{"status": "on"}]}).encode(),
            "alerts.0.status",
        ),
        (
            json.dumps(
                {
                    "version": "4",
                    "status": "firing",
                    "alerts": [{"status": "firing", "labels": {}, "startsAt": "yesterday"}],
                }
            ).encode(),
            "alerts.0.startsAt",
        ),
    ],
)
def test_bad_bodies_say_why(raw: bytes, reason: str) -> None:
    with pytest.raises(PayloadError, match=reason):
        parse_notification(raw, T0)


def test_missing_fingerprint_and_start_are_filled_in() -> None:
    raw = json.dumps(
        {"version": 4, "status": "firing", "alerts": [{"status": "firing", "labels": {"a": "b"}}]}
    ).encode()
    (only,) = parse_notification(raw, T0).alerts
    assert only.fingerprint == fingerprint_of({"a": "b"})
    assert only.starts_at == T0
