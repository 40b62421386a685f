from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from impactwatch.catalog.deadlines import next_unmet_deadline, surrounding_deadlines

LONDON = ZoneInfo("Europe/London")


def ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def test_surrounding_deadlines_follow_local_time_across_dst() -> None:
    # 2026-03-29: clocks go forward in London; 06:00 local is 05:00 UTC that day.
    prev, nxt = surrounding_deadlines(6, 0, LONDON, ts("2026-03-29T12:00:00+00:00"))
    assert prev == ts("2026-03-29T05:00:00+00:00")
    assert nxt == ts("2026-03-30T05:00:00+00:00")


def test_next_unmet_deadline() -> None:
    now = ts("2026-11-24T10:00:00+00:00")  # London = UTC in November; deadline 06:00
    today, tomorrow = ts("2026-11-24T06:00:00+00:00"), ts("2026-11-25T06:00:00+00:00")
    assert next_unmet_deadline(6, 0, LONDON, None, now) is None  # never ran: nothing to hold
    # met today (success at 05:30): the next one open is tomorrow's
    assert next_unmet_deadline(6, 0, LONDON, ts("2026-11-24T05:30:00+00:00"), now) == tomorrow
    # succeeded after today's deadline: today's was missed, but that success meets tomorrow's
    assert next_unmet_deadline(6, 0, LONDON, ts("2026-11-24T07:00:00+00:00"), now) == ts(
        "2026-11-26T06:00:00+00:00"
    )
    # last success yesterday morning before 06:00: today's deadline is missed
    assert next_unmet_deadline(6, 0, LONDON, ts("2026-11-23T05:00:00+00:00"), now) == today
    # days without success: still the latest missed deadline
    assert next_unmet_deadline(6, 0, LONDON, ts("2026-11-20T05:00:00+00:00"), now) == today
