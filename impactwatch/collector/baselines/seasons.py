"""Seasonal buckets: hour of day, weekdays apart from weekends (48 buckets, UTC).

Why not hour of week: eight weeks of an hourly DAG give 8 runs per hour of week but 40 per
weekday hour, and the difference that matters in batch pipelines is weekday against weekend
(Elementary's hour-of-week seasonality needs its 14 days of daily history to say anything at
all). UTC, so a daylight-saving change moves a local-time schedule to the next bucket for the
first few runs, which the "enough history" rule then covers with all runs.
"""

from __future__ import annotations

DAY = 86400.0
BUCKETS = 48


def is_weekend(ts: float) -> bool:
    """Saturday or Sunday, UTC (1970-01-01 was a Thursday)."""
    return (int(ts // DAY) + 3) % 7 >= 5


def bucket(ts: float) -> int:
    """The seasonal bucket of a moment: 0-23 weekday hours, 24-47 weekend hours."""
    hour = int(ts % DAY // 3600)
    return hour + (24 if is_weekend(ts) else 0)


def day_start(ts: float) -> float:
    return ts - ts % DAY
