"""Replay a pool's tries under a size schedule: when would each have started? Pure.

The model (docs/pools.md, "What the replay assumes"): a try asks for its slot when it was
queued and runs as long as it ran; the pool serves waiting tries first come, first served, as
soon as a slot is free; a smaller size never stops a running try, it only holds new ones back.
Everything else that delayed a start (scheduler, executor, workers) is left out, in both the
static and the advised replay alike.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence

from impactwatch.pools.usage import HOUR, HOURS_PER_WEEK, HourOfWeek, PoolTry


def replay(tries: Sequence[PoolTry], slots: Sequence[int], hours: HourOfWeek) -> list[float]:
    """Simulated queue wait of each try (same order as `tries`) with `slots[hour of week]`
    slots; `math.inf` for a try that would never start (a schedule of zero slots)."""
    if len(slots) != HOURS_PER_WEEK:
        raise ValueError(f"a schedule has {HOURS_PER_WEEK} hourly sizes, got {len(slots)}")
    at = [t.queued for t in tries]
    order = sorted(range(len(tries)), key=at.__getitem__)
    queued = [at[i] for i in order]
    length = [d if d > 0.0 else 0.0 for d in (tries[i].end - tries[i].start for i in order)]
    if len(set(slots)) == 1:
        waits = _fixed(queued, length, slots[0])
    else:
        waits = _scheduled(queued, length, slots, _hours_to_change(slots), hours)
    out = [math.inf] * len(tries)
    for j, i in enumerate(order):
        out[i] = waits[j]
    return out


def _fixed(queued: list[float], length: list[float], size: int) -> list[float]:
    """Waits under one size all week, first come first served: a try starts when it is queued
    or, with every slot taken, when the earliest running try ends (tries in queued order)."""
    if size < 1:
        return [math.inf] * len(queued)
    running: list[float] = []  # end times
    waits = []
    push, replace = heapq.heappush, heapq.heapreplace
    for q, d in zip(queued, length, strict=True):
        if len(running) < size:
            waits.append(0.0)
            push(running, q + d)
            continue
        free = running[0]
        start = free if free > q else q
        waits.append(start - q)
        replace(running, start + d)
    return waits


def _scheduled(
    queued: list[float],
    length: list[float],
    slots: Sequence[int],
    change: list[int],
    hours: HourOfWeek,
) -> list[float]:
    """Waits under a size that changes by hour: each try (in queued order) starts at the
    earliest time, not before it is queued nor before the try queued before it started, when
    fewer tries run than the size then; that time is its queue time, an end, or a size change."""
    running: list[float] = []  # end times of started tries still running at `now`
    waits = []
    size_at: dict[int, tuple[int, float]] = {}  # absolute hour -> (size, next size change)
    pop, push = heapq.heappop, heapq.heappush
    now = -math.inf
    for q, d in zip(queued, length, strict=True):
        t = q if q > now else now
        while True:
            while running and running[0] <= t:
                pop(running)
            h = int(t // HOUR)
            at = size_at.get(h)
            if at is None:
                how = hours(h)
                at = size_at[h] = (slots[how], (h + change[how]) * HOUR)
            if len(running) < at[0]:
                break
            t = running[0] if running and running[0] < at[1] else at[1]
        waits.append(t - q)
        push(running, t + d)
        now = t
    return waits


def _hours_to_change(slots: Sequence[int]) -> list[int]:
    """For each hour of week, hours until the size differs (0: it never does)."""
    if len(set(slots)) == 1:
        return [0] * HOURS_PER_WEEK
    out = [0] * HOURS_PER_WEEK
    step = 0
    for i in range(2 * HOURS_PER_WEEK - 1, -1, -1):  # backwards, twice round the week
        how = i % HOURS_PER_WEEK
        step = step + 1 if slots[(how + 1) % HOURS_PER_WEEK] == slots[how] else 1
        out[how] = step
    return out


def slot_hours(slots: Sequence[int], since: float, until: float, hours: HourOfWeek) -> float:
    """Slot hours a schedule provides over `[since, until)`, whole hours."""
    first, last = math.floor(since / HOUR), math.ceil(until / HOUR)
    return float(sum(slots[how] for how in hours.span(first, last)))
