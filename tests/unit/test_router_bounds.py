"""Inbound values bounded at the router's edge: shortening, control characters, clamped times."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from impactwatch.router import bounds
from impactwatch.router.escape import date
from impactwatch.router.payload import parse_notification
from impactwatch.router.render import RenderContext, render_incident
from impactwatch.router.service import RouterService
from impactwatch.router.settings import RouterSettings
from tests.unit.test_router_support import T0, alert, body, catalog, notification, texts


def test_shorten_keeps_short_values_and_notes_the_length_of_long_ones() -> None:
    assert bounds.shorten("risk", 10) == "risk"
    cut = bounds.shorten("a" * 1000, 200)
    assert len(cut) == 200 and cut.startswith("a" * 150) and "(1000 chars, #" in cut
    # Two long values that differ only past the cut stay different.
    assert bounds.shorten("a" * 1000 + "x", 200) != bounds.shorten("a" * 1000 + "y", 200)


def test_clean_replaces_control_characters_and_counts_each_change() -> None:
    adjusted = bounds.Adjusted()
    assert bounds.clean("Nul\x00led\x1b", 50, "label", adjusted) == "Nul\ufffdled\ufffd"
    assert bounds.clean("two\nlines\ttab\x00", 50, "annotation", adjusted, free_text=True) == (
        "two\nlines\ttab\ufffd"
    )
    assert bounds.clean("lone \ud800 surrogate", 50, "label", adjusted).encode()  # UTF-8 now
    assert len(bounds.clean("x" * 60, 50, "label", adjusted)) == 50
    assert adjusted == {
        ("label", "control_character"): 2,
        ("annotation", "control_character"): 1,
        ("label", "too_long"): 1,
    }


def test_times_outside_the_calendar_are_clamped_and_shown_as_such() -> None:
    adjusted = bounds.Adjusted()
    year_9999 = datetime.fromisoformat("9999-12-31T23:00:00-05:00").timestamp()
    assert bounds.clamp_time(year_9999, "time", adjusted) == bounds.LATEST
    assert bounds.clamp_time(T0, "time", adjusted) == T0
    assert bounds.clamp_time(float("nan"), "time", adjusted) == bounds.LATEST
    assert adjusted == {("time", "out_of_range"): 2}
    assert date(bounds.LATEST) == "(date out of range)"
    assert date(float("inf")) == "(date out of range)"
    assert date(T0).startswith(f"<!date^{int(T0)}^")
    datetime.fromtimestamp(bounds.LATEST + 86399, UTC)  # a day of margin: still printable


def test_a_notification_is_never_refused_for_its_labels() -> None:
    """A label longer than the store keeps, a NUL byte, a long fingerprint, a year-9999 start:
    the alert is kept, safely shortened, and the changes are counted."""
    raw = alert(
        name="A" * 400 + "\x00",
        kind="k" * 80,
        dataset="market_data",
        team="markets",
        extra="x" * 20_000,
        annotations={"summary": "s" * 20_000, "description": "line one\nline two\x00"},
    )
    raw["startsAt"] = "9999-12-31T23:00:00-05:00"
    raw["fingerprint"] = "f" * 500
    parsed = parse_notification(body([raw]), T0)
    (got,) = parsed.alerts
    assert (
        len(got.labels["alertname"]) == bounds.MAX_LABEL
        and "(401 chars, #" in got.labels["alertname"]
    )
    assert "\x00" not in got.labels["alertname"]
    assert len(got.labels["kind"]) == bounds.MAX_KIND
    assert len(got.labels["extra"]) == bounds.MAX_LABEL
    assert len(got.annotations["summary"]) == bounds.MAX_TEXT
    assert got.annotations["description"] == "line one\nline two\ufffd"
    assert len(got.fingerprint) <= bounds.MAX_FINGERPRINT
    assert got.starts_at == bounds.LATEST
    assert parsed.adjusted == {
        ("label", "control_character"): 1,
        ("label", "too_long"): 3,
        ("annotation", "too_long"): 1,
        ("annotation", "control_character"): 1,
        ("fingerprint", "too_long"): 1,
        ("time", "out_of_range"): 1,
    }
    assert json.dumps(got.labels).encode()  # storable as text


def test_an_incident_with_an_unprintable_start_renders_with_the_date_out_of_range(
    tmp_path: object,
) -> None:
    raw = alert(dataset="market_data", team="markets")
    raw["startsAt"] = "9999-12-31T23:00:00-05:00"
    settings = RouterSettings(state_db="sqlite://", settle_seconds=0)
    service = RouterService(settings, catalog(), clock=lambda: T0)
    try:
        service.handle(notification(raw))
        with service.store.read() as conn:
            (incident_id,) = service.store.load_view(conn, keys=["dataset:market_data"]).incidents
            incident = service.store.load_incident(conn, incident_id)
        assert incident is not None
        shown = "\n".join(texts(render_incident(RenderContext(catalog()), incident, T0).blocks))
        assert "(date out of range)" in shown
    finally:
        service.close()
