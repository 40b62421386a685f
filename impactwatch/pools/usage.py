"""Pool usage by hour of week, from task tries: slots held and waited for, the peak demand of
each hour, queue wait of SLA-bearing pipelines, and the CPU and memory the tasks used. Pure.

A try waits in its pool from `queued` to `start` and holds one slot from `start` to `end`
(Airflow's `pool_slots` is not recorded in the state DB: every try counts one slot). Its
*demand* is what it would have held with an unlimited pool, `[queued, queued + duration)`: the
peak of that over an hour is the size that hour needed for nothing to wait on the pool.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

HOURS_PER_WEEK = 168
HOUR = 3600.0
WEEK = HOURS_PER_WEEK * HOUR
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")

# How much a pipeline's queue wait weighs when sizing (catalog: tier, deadline, max_duration).
STANDARD, SLA_BEARING, CRITICAL = 0, 1, 2
CLASS_NAMES = {STANDARD: "standard", SLA_BEARING: "SLA-bearing", CRITICAL: "critical"}
# Share of an hour's time the size it needs serves all demand at once, by class.
COVERAGES = (0.75, 0.9, 0.95)


@dataclass(frozen=True, slots=True)
class PoolTry:
    """One task try in a pool, times in Unix seconds; `queued` is `start` when not recorded."""

    pool: str
    dag_id: str
    queued: float
    start: float
    end: float
    cpu_seconds: float | None = None
    peak_rss_bytes: float | None = None

    @property
    def duration(self) -> float:
        return max(self.end - self.start, 0.0)

    @property
    def wait(self) -> float:
        return max(self.start - self.queued, 0.0)


@dataclass(frozen=True, slots=True)
class Level:
    """One hour's demand: its peak and the slots that served it for each coverage."""

    peak: int
    needs: tuple[int, ...]


NO_DEMAND = Level(0, (0, 0, 0))


@dataclass(slots=True)
class PoolUsage:
    """One pool's use over a window, per hour of week (index 0 is Monday 00:00-01:00 local).

    Sums are over the window; `weeks[h]` says how many times hour `h` lies in it, so means are
    `held[h] / (HOUR * weeks[h])`. `levels[h]` has one entry per covered hour (one per week):
    its peak demand and the slots that served its demand for each weight class's coverage.
    """

    pool: str
    weeks: list[int]
    held: list[float] = field(default_factory=lambda: [0.0] * HOURS_PER_WEEK)
    waiting: list[float] = field(default_factory=lambda: [0.0] * HOURS_PER_WEEK)
    tries: list[int] = field(default_factory=lambda: [0] * HOURS_PER_WEEK)
    sla_wait: list[float] = field(default_factory=lambda: [0.0] * HOURS_PER_WEEK)
    cpu_seconds: list[float] = field(default_factory=lambda: [0.0] * HOURS_PER_WEEK)
    peak_rss_bytes: list[float] = field(default_factory=lambda: [0.0] * HOURS_PER_WEEK)
    levels: list[list[Level]] = field(default_factory=list)
    weight: list[int] = field(default_factory=lambda: [STANDARD] * HOURS_PER_WEEK)
    critical: list[set[str]] = field(default_factory=lambda: [set() for _ in range(HOURS_PER_WEEK)])

    def mean_running(self, how: int) -> float:
        return self.held[how] / (HOUR * self.weeks[how]) if self.weeks[how] else 0.0

    def mean_queued(self, how: int) -> float:
        return self.waiting[how] / (HOUR * self.weeks[how]) if self.weeks[how] else 0.0

    def cpu_cores(self, how: int) -> float:
        """Mean CPU cores the pool's tasks used while holding a slot in that hour."""
        return self.cpu_seconds[how] / self.held[how] if self.held[how] else 0.0


class HourOfWeek:
    """Maps an absolute hour (Unix seconds // 3600) to its hour of week in a time zone."""

    def __init__(self, tz: str = "UTC") -> None:
        self.zone = ZoneInfo(tz)
        self.utc = tz in ("UTC", "Etc/UTC")
        self._cache: dict[int, int] = {}

    def __call__(self, hour: int) -> int:
        if self.utc:
            return (hour + 72) % HOURS_PER_WEEK  # 1970-01-01 was a Thursday
        found = self._cache.get(hour)
        if found is None:
            local = datetime.fromtimestamp(hour * HOUR, self.zone)
            found = local.weekday() * 24 + local.hour
            self._cache[hour] = found
        return found


def how_name(how: int) -> str:
    return f"{DAYS[how // 24]} {how % 24:02d}:00"


def pool_usage(
    tries: Iterable[PoolTry],
    since: float,
    until: float,
    classes: Mapping[str, int],
    hours: HourOfWeek,
    coverages: tuple[float, float, float] = COVERAGES,
) -> dict[str, PoolUsage]:
    """Usage of every pool with tries whose wait or demand falls in `[since, until)`.

    `classes` gives each DAG's weight class (STANDARD when absent); an hour's `weight` is the
    highest class with demand in it, in any week. `coverages` (by class) say what share of an
    hour's time its needed size must serve all demand.
    """
    if until <= since:
        raise ValueError("the window is empty: until must be after since")
    first, last = math.floor(since / HOUR), math.ceil(until / HOUR)
    how_at = [hours(h) for h in range(first, last)]
    weeks = [0] * HOURS_PER_WEEK
    for how in how_at:
        weeks[how] += 1
    by_pool: dict[str, list[PoolTry]] = {}
    for t in tries:
        by_pool.setdefault(t.pool, []).append(t)
    return {
        pool: _one_pool(pool, ts, since, until, first, how_at, weeks, classes, coverages)
        for pool, ts in sorted(by_pool.items())
    }


def _spread(acc: list[float], a: float, b: float, first: int, how_at: list[int]) -> None:
    """Add the seconds of `[a, b)` to `acc` by hour of week (a and b inside the window)."""
    h = int(a // HOUR)
    while a < b:
        edge = (h + 1) * HOUR
        acc[how_at[h - first]] += (b if b < edge else edge) - a
        a = edge
        h += 1


def _one_pool(
    pool: str,
    tries: list[PoolTry],
    since: float,
    until: float,
    first: int,
    how_at: list[int],
    weeks: list[int],
    classes: Mapping[str, int],
    coverages: tuple[float, ...],
) -> PoolUsage:
    u = PoolUsage(pool=pool, weeks=list(weeks))
    events: list[tuple[float, int]] = []
    class_at: dict[int, int] = {}  # absolute hour -> highest class with demand in it
    for t in tries:
        demand_end = t.queued + t.duration
        lo, hi = max(t.queued, since), min(max(demand_end, t.end), until)
        if hi <= lo and not (since <= t.queued < until):
            continue
        cls = classes.get(t.dag_id, STANDARD)
        if since <= t.queued < until:
            how = how_at[int(t.queued // HOUR) - first]
            u.tries[how] += 1
            if cls > STANDARD:
                u.sla_wait[how] += t.wait
        s, e = max(t.start, since), min(t.end, until)
        if e > s:
            _spread(u.held, s, e, first, how_at)
        s, e = max(t.queued, since), min(t.start, until)
        if e > s:
            _spread(u.waiting, s, e, first, how_at)
        if since <= t.start < until:
            how = how_at[int(t.start // HOUR) - first]
            u.cpu_seconds[how] += t.cpu_seconds or 0.0
            if t.peak_rss_bytes and t.peak_rss_bytes > u.peak_rss_bytes[how]:
                u.peak_rss_bytes[how] = t.peak_rss_bytes
        d_lo, d_hi = max(t.queued, since), min(demand_end, until)
        if d_hi > d_lo:
            events.append((d_lo, 1))
            events.append((d_hi, -1))
            if cls > STANDARD:
                for h in range(int(d_lo // HOUR), math.ceil(d_hi / HOUR)):
                    if class_at.get(h, STANDARD) < cls:
                        class_at[h] = cls
                    if cls == CRITICAL:
                        u.critical[how_at[h - first]].add(t.dag_id)
    level_at = _levels(events, coverages)
    for h, cls in class_at.items():
        how = how_at[h - first]
        u.weight[how] = max(u.weight[how], cls)
    u.levels = [[] for _ in range(HOURS_PER_WEEK)]
    for i, how in enumerate(how_at):
        u.levels[how].append(level_at.get(first + i, NO_DEMAND))
    return u


def _levels(events: list[tuple[float, int]], coverages: tuple[float, ...]) -> dict[int, Level]:
    """For each absolute hour with demand: its peak (most intervals overlapping at once) and,
    per coverage c, the fewest slots that served the demand for c of the hour's time."""
    events.sort()  # at equal times ends (-1) come before starts
    peak: dict[int, int] = {}
    spent: dict[int, dict[int, float]] = {}  # hour -> level -> seconds at that level
    level, prev = 0, 0.0
    for t, delta in events:
        if level > 0 and t > prev:
            a, h = prev, int(prev // HOUR)
            while a < t:
                edge = (h + 1) * HOUR
                b = t if t < edge else edge
                at = spent.setdefault(h, {})
                at[level] = at.get(level, 0.0) + (b - a)
                if peak.get(h, 0) < level:
                    peak[h] = level
                a, h = b, h + 1
        level += delta
        prev = t
    out = {}
    for h, at in spent.items():
        busy = sorted(at.items())
        needs = []
        for c in coverages:
            covered = HOUR - sum(at.values())  # the rest of the hour: no demand
            need = 0
            for lvl, seconds in busy:
                if covered >= c * HOUR - 1e-6:
                    break
                covered += seconds
                need = lvl
            needs.append(need)
        out[h] = Level(peak[h], tuple(needs))
    return out
