"""Daily deadlines ("06:00 Europe/London") as instants, and which one is the next not yet met."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo


def _instant(day: date, at: time, zone: ZoneInfo) -> float:
    return datetime.combine(day, at, tzinfo=zone).timestamp()


def surrounding_deadlines(
    hour: int, minute: int, zone: ZoneInfo, now: float
) -> tuple[float, float]:
    """The latest deadline at or before `now` and the first one after it (DST-correct)."""
    at = time(hour, minute)
    today = datetime.fromtimestamp(now, zone).date()
    candidate = _instant(today, at, zone)
    if candidate <= now:
        return candidate, _instant(today + timedelta(days=1), at, zone)
    return _instant(today - timedelta(days=1), at, zone), candidate


def next_unmet_deadline(
    hour: int, minute: int, zone: ZoneInfo, last_success: float | None, now: float
) -> float | None:
    """The earliest deadline with no successful run since the deadline before it.

    A deadline D is met by a success that ended in (the previous deadline, D]. A result at or
    before `now`
    is a missed deadline; `None` when the pipeline never succeeded (nothing to hold it to yet).
    """
    if last_success is None:
        return None
    previous, following = surrounding_deadlines(hour, minute, zone, now)
    if last_success > previous:  # the next deadline is met already: the one after it is open
        return surrounding_deadlines(hour, minute, zone, following + 1)[1]
    if last_success > surrounding_deadlines(hour, minute, zone, previous - 1)[0]:
        return following
    return previous
