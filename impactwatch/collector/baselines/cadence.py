"""When something usually happens: a data product's updates, a DAG's run starts.

From the last CADENCE_WINDOW timestamps: the usual interval (median, p90) and, for what happens
about daily, the usual time of day (p90 of each day's first event: "usually updated by 06:40"),
weekdays apart from weekends, and whether it happens on weekends at all.

Enough history: MIN_EVENTS events; the weekday/weekend split once each kind of day spans
MIN_SEASON_DAYS days (else every day is alike). Before that: no expectation (None).
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from itertools import pairwise

from impactwatch.collector.baselines.seasons import DAY, day_start, is_weekend
from impactwatch.collector.baselines.window import quantile

CADENCE_WINDOW = 48
MIN_EVENTS = 8
MIN_SEASON_DAYS = 3
DAILY = (20 * 3600.0, 28 * 3600.0)  # a median interval in here: daily, by time of day
SAME_EVENT = 60.0  # events closer than this are one (a re-run's update)
MIN_SLACK = 900.0  # the least tolerance past the usual time before a learned alert
SLACK_SHARE = 0.25  # else this share of the usual interval (sub-daily cadences)


@dataclass(frozen=True, slots=True)
class Usual:
    """What is usual, learned from `n` events."""

    n: int
    interval: float  # median interval between events
    interval_p90: float
    daily: bool
    by_time: tuple[float, float] | None = None  # weekday, weekend: p90 seconds after midnight
    spread: tuple[float, float] | None = None  # weekday, weekend: p90 - p10 of the time of day
    active: tuple[bool, bool] = (True, True)  # weekday, weekend: does it happen on such days


@dataclass(frozen=True, slots=True)
class Expected:
    """After an event at `after`: the next one usually comes by `by`; a learned limit counts it
    late past `limit` (by plus a tolerance)."""

    by: float
    limit: float


class Cadence:
    __slots__ = ("_after", "_next", "_usual", "times")

    def __init__(self) -> None:
        self.times = array("d")
        self._next = 0
        self._usual: Usual | None = None
        self._after: tuple[float, Expected] | None = None  # the last `expected` asked for

    def add(self, ts: float) -> None:
        """An event at `ts` (one within SAME_EVENT of the latest is the same event)."""
        if self.times and abs(ts - self.latest()) < SAME_EVENT:
            return
        if len(self.times) < CADENCE_WINDOW:
            self.times.append(ts)
        else:
            self.times[self._next] = ts
            self._next = (self._next + 1) % CADENCE_WINDOW
        self._usual = self._after = None

    def latest(self) -> float:
        return max(self.times)

    def __len__(self) -> int:
        return len(self.times)

    def usual(self) -> Usual | None:
        if len(self.times) < MIN_EVENTS:
            return None
        if self._usual is None:
            self._usual = learn(sorted(self.times))
        return self._usual

    def expected(self, after: float) -> Expected | None:
        usual = self.usual()
        if usual is None:
            return None
        if self._after is None or self._after[0] != after:
            self._after = (after, expect(usual, after))
        return self._after[1]


def learn(times: list[float]) -> Usual:
    """The usual cadence of sorted event times (at least two)."""
    intervals = sorted(b - a for a, b in pairwise(times))
    median, p90 = quantile(intervals, 0.5), quantile(intervals, 0.9)
    if not DAILY[0] <= median <= DAILY[1]:
        return Usual(len(times), median, p90, daily=False)
    first: dict[float, float] = {}  # day -> time of day of its first event
    for ts in times:
        first.setdefault(day_start(ts), ts % DAY)
    span = [times[0] // DAY * DAY + i * DAY for i in range(int((times[-1] - times[0]) // DAY) + 1)]
    kinds = [[d for d in span if is_weekend(d) == weekend] for weekend in (False, True)]
    seasonal = all(len(days) >= MIN_SEASON_DAYS for days in kinds)
    by_time, spread, active = [], [], []
    for days in kinds if seasonal else [span, span]:
        times_of_day = sorted(first[d] for d in days if d in first)
        on = len(times_of_day) >= max(1, len(days) // 2)
        if not times_of_day:  # (not seasonal, or it never happens on such days)
            times_of_day = sorted(first.values())
        active.append(on)
        by_time.append(quantile(times_of_day, 0.9))
        spread.append(quantile(times_of_day, 0.9) - quantile(times_of_day, 0.1))
    return Usual(
        len(times),
        median,
        p90,
        daily=True,
        by_time=(by_time[0], by_time[1]),
        spread=(spread[0], spread[1]),
        active=(active[0], active[1]) if any(active) else (True, True),
    )


def expect(usual: Usual, after: float) -> Expected:
    """When the event after one at `after` is usually in, and when it counts as late."""
    if not usual.daily or usual.by_time is None or usual.spread is None:
        slack = max(MIN_SLACK, SLACK_SHARE * usual.interval)
        by = after + usual.interval_p90
        return Expected(by, by + slack)
    day = day_start(after) + DAY
    for _ in range(8):
        weekend = int(is_weekend(day))
        if usual.active[weekend]:
            by = day + usual.by_time[weekend]
            slack = max(MIN_SLACK, usual.spread[weekend])
            return Expected(by, by + slack)
        day += DAY
    raise AssertionError("unreachable: a daily cadence is active on some kind of day")
