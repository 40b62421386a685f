"""Learned thresholds, where the catalog gives none (the catalog's always win: metrics/state.py).

- freshness: a data product is late once the update after its last one is past when it usually
  comes (cadence.py: the p90 interval, or for daily products the p90 time of day of that kind
  of day) plus a tolerance (at least 15 minutes, or the spread of the usual time of day, or a
  quarter of a sub-daily interval). As a max age, so the freshness rule stays `age > limit`.
- duration: a run is too long past LIMIT_FACTOR x the p90 of its seasonal bucket, and at least
  MIN_DURATION_SLACK past the median.
"""

from __future__ import annotations

from dataclasses import dataclass

from impactwatch.collector.baselines.cadence import Cadence
from impactwatch.collector.baselines.durations import Usual

LIMIT_FACTOR = 1.5
MIN_DURATION_SLACK = 600.0


@dataclass(frozen=True, slots=True)
class Freshness:
    """A learned freshness limit after an update at `last`: the max age, and when the next
    update usually comes by."""

    limit: float
    by: float


def learned_freshness(cadence: Cadence, last: float) -> Freshness | None:
    found = cadence.expected(last)
    if found is None:
        return None
    return Freshness(limit=found.limit - last, by=found.by)


def learned_max_duration(usual: Usual | None) -> float | None:
    if usual is None:
        return None
    return max(LIMIT_FACTOR * usual.p90, usual.median + MIN_DURATION_SLACK)
