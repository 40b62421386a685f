"""Pool usage by hour of week, from task tries: slots held and waited for, the peak demand of
each hour, queue wait of SLA-bearing pipelines, and the CPU and memory the tasks used. Pure.

A try waits in its pool from `queued` to `start` and holds one slot from `start` to `end`
(Airflow's `pool_slots` is not recorded in the state DB: every try counts one slot). Its
*demand* is what it would have held with an unlimited pool, `[queued, queued + duration)`: the
peak of that over an hour is the size that hour needed for nothing to wait on the pool.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
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
        self._span: tuple[tuple[int, int], list[int]] = ((0, 0), [])

    def __call__(self, hour: int) -> int:
        if self.utc:
            return (hour + 72) % HOURS_PER_WEEK  # 1970-01-01 was a Thursday
        found = self._cache.get(hour)
        if found is None:
            local = datetime.fromtimestamp(hour * HOUR, self.zone)
            found = local.weekday() * 24 + local.hour
            self._cache[hour] = found
        return found

    def span(self, first: int, last: int) -> list[int]:
        """Hours of week of the absolute hours `first` to `last - 1` (the last span is kept:
        one advice asks for the same window for every pool)."""
        if self._span[0] != (first, last):
            self._span = ((first, last), [self(h) for h in range(first, last)])
        return self._span[1]


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
    by_pool: dict[str, list[PoolTry]] = {}
    for t in tries:
        by_pool.setdefault(t.pool, []).append(t)
    return usage_by_pool(by_pool, since, until, classes, hours, coverages)


def usage_by_pool(
    by_pool: Mapping[str, Sequence[PoolTry]],
    since: float,
    until: float,
    classes: Mapping[str, int],
    hours: HourOfWeek,
    coverages: tuple[float, float, float] = COVERAGES,
) -> dict[str, PoolUsage]:
    """`pool_usage` of tries already grouped by pool (each pool's tries are its own)."""
    if until <= since:
        raise ValueError("the window is empty: until must be after since")
    first, last = math.floor(since / HOUR), math.ceil(until / HOUR)
    how_at = hours.span(first, last)
    weeks = [0] * HOURS_PER_WEEK
    for how in how_at:
        weeks[how] += 1
    return {
        pool: _one_pool(pool, ts, since, until, first, how_at, weeks, classes, coverages)
        for pool, ts in sorted(by_pool.items())
        if ts
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
    tries: Sequence[PoolTry],
    since: float,
    until: float,
    first: int,
    how_at: list[int],
    weeks: list[int],
    classes: Mapping[str, int],
    coverages: tuple[float, ...],
) -> PoolUsage:
    # One pass over the tries with everything in locals: at 1,000 pools this loop is most of
    # the advice's time (bench/bench_pools.py); most intervals lie in one hour, added directly.
    u = PoolUsage(pool=pool, weeks=list(weeks))
    held, waiting, count, sla_wait = u.held, u.waiting, u.tries, u.sla_wait
    cpu, rss, critical = u.cpu_seconds, u.peak_rss_bytes, u.critical
    starts: list[float] = []  # demand intervals, for the sweep in `_levels`
    ends: list[float] = []
    class_at: dict[int, int] = {}  # absolute hour -> highest class with demand in it
    get_class = classes.get
    for t in tries:
        q, st, en = t.queued, t.start, t.end
        length = en - st if en > st else 0.0
        demand_end = q + length
        lo = q if q > since else since
        top = demand_end if demand_end > en else en
        queued_in = since <= q < until
        if (top if top < until else until) <= lo and not queued_in:
            continue
        cls = get_class(t.dag_id, STANDARD)
        if queued_in:
            how = how_at[int(q // HOUR) - first]
            count[how] += 1
            if cls > STANDARD:
                sla_wait[how] += st - q if st > q else 0.0
        a = st if st > since else since
        b = en if en < until else until
        if b > a:
            h = int(a // HOUR)
            if b <= (h + 1) * HOUR:
                held[how_at[h - first]] += b - a
            else:
                _spread(held, a, b, first, how_at)
        b = st if st < until else until
        if b > lo:
            h = int(lo // HOUR)
            if b <= (h + 1) * HOUR:
                waiting[how_at[h - first]] += b - lo
            else:
                _spread(waiting, lo, b, first, how_at)
        if since <= st < until:
            how = how_at[int(st // HOUR) - first]
            cpu[how] += t.cpu_seconds or 0.0
            peak = t.peak_rss_bytes
            if peak and peak > rss[how]:
                rss[how] = peak
        d_hi = demand_end if demand_end < until else until
        if d_hi > lo:
            starts.append(lo)
            ends.append(d_hi)
            if cls > STANDARD:
                for h in range(int(lo // HOUR), math.ceil(d_hi / HOUR)):
                    if class_at.get(h, STANDARD) < cls:
                        class_at[h] = cls
                    if cls == CRITICAL:
                        critical[how_at[h - first]].add(t.dag_id)
    level_at = _levels(starts, ends, coverages)
    for h, cls in class_at.items():
        how = how_at[h - first]
        u.weight[how] = max(u.weight[how], cls)
    u.levels = [[] for _ in range(HOURS_PER_WEEK)]
    for i, how in enumerate(how_at):
        u.levels[how].append(level_at.get(first + i, NO_DEMAND))
    return u


def _levels(
    starts: list[float], ends: list[float], coverages: tuple[float, ...]
) -> dict[int, Level]:
    """For each absolute hour with demand: its peak (most intervals `[starts[i], ends[i])`
    overlapping at once) and, per coverage c, the fewest slots that served the demand for c of
    the hour's time."""
    n = len(starts)
    starts.sort()
    starts.append(math.inf)  # a sentinel: no start after the last
    ends.sort()
    spent: dict[int, dict[int, float]] = {}  # hour -> level -> seconds at that level
    i, j = 0, 0
    level, prev = 0, 0.0
    cur_hour, cur, edge = -1, {}, 0.0  # the hour `prev` lies in, its levels, its end
    while j < n:  # the events in time order, at equal times ends before starts
        if starts[i] < ends[j]:
            t, delta = starts[i], 1
            i += 1
        else:
            t, delta = ends[j], -1
            j += 1
        if level > 0 and t > prev:
            a = prev
            while True:
                if a >= edge:  # entered a later hour
                    cur_hour = int(a // HOUR)
                    edge = (cur_hour + 1) * HOUR
                    cur = spent.setdefault(cur_hour, {})
                b = t if t < edge else edge
                cur[level] = cur.get(level, 0.0) + (b - a)
                if b >= t:
                    break
                a = b
        level += delta
        prev = t
    out = {}
    for h, at in spent.items():
        busy = sorted(at.items())
        idle = HOUR - sum(at.values())  # the rest of the hour: no demand
        needs = []
        for c in coverages:
            covered, need = idle, 0
            for lvl, seconds in busy:
                if covered >= c * HOUR - 1e-6:
                    break
                covered += seconds
                need = lvl
            needs.append(need)
        out[h] = Level(busy[-1][0], tuple(needs))
    return out
