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
from collections import deque
from collections.abc import Sequence

from impactwatch.pools.usage import HOUR, HOURS_PER_WEEK, HourOfWeek, PoolTry


def replay(tries: Sequence[PoolTry], slots: Sequence[int], hours: HourOfWeek) -> list[float]:
    """Simulated queue wait of each try (same order as `tries`) with `slots[hour of week]`
    slots; `math.inf` for a try that would never start (a schedule of zero slots)."""
    if len(slots) != HOURS_PER_WEEK:
        raise ValueError(f"a schedule has {HOURS_PER_WEEK} hourly sizes, got {len(slots)}")
    change = _hours_to_change(slots)
    order = sorted(range(len(tries)), key=lambda i: tries[i].queued)
    queued = [tries[i].queued for i in order]
    length = [tries[i].duration for i in order]
    waits = [math.inf] * len(tries)
    running: list[float] = []  # end times
    waiting: deque[int] = deque()  # positions in `order`
    nxt, n, now = 0, len(order), -math.inf
    size_of: dict[int, int] = {}  # absolute hour -> size (hours() is the slow part)
    push, pop, inf = heapq.heappush, heapq.heappop, math.inf
    while nxt < n or waiting:
        t = queued[nxt] if nxt < n else inf
        if running and running[0] < t:
            t = running[0]
        if waiting:  # a larger size at the next change may start them
            h = int(now // HOUR)
            steps = change[hours(h)]
            if steps:
                t = min(t, (h + steps) * HOUR)
        if t == inf:
            break  # zero slots from here on: the rest never start
        now = t
        while running and running[0] <= t:
            pop(running)
        while nxt < n and queued[nxt] <= t:
            waiting.append(nxt)
            nxt += 1
        if not waiting:
            continue
        h = int(t // HOUR)
        size = size_of.get(h)
        if size is None:
            size = size_of[h] = slots[hours(h)]
        while waiting and len(running) < size:
            j = waiting.popleft()
            waits[order[j]] = t - queued[j]
            push(running, t + length[j])
    return waits


def _hours_to_change(slots: Sequence[int]) -> list[int]:
    """For each hour of week, hours until the size differs (0: it never does)."""
    if len(set(slots)) == 1:
        return [0] * HOURS_PER_WEEK
    out = [0] * HOURS_PER_WEEK
    for how in range(HOURS_PER_WEEK):
        step = 1
        while slots[(how + step) % HOURS_PER_WEEK] == slots[how]:
            step += 1
        out[how] = step
    return out


def slot_hours(slots: Sequence[int], since: float, until: float, hours: HourOfWeek) -> float:
    """Slot hours a schedule provides over `[since, until)`, whole hours."""
    first, last = math.floor(since / HOUR), math.ceil(until / HOUR)
    return float(sum(slots[hours(h)] for h in range(first, last)))
