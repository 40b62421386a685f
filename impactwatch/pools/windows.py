"""A day's 24 hourly slot needs as a few windows of constant size. Pure.

Each window gets the largest need of its hours (no hour gets less than it needed), and the cut
minimises the slot hours given beyond the needs, over every way of cutting the (circular) day
into at most `max_windows` windows: dynamic programming over runs of equal need.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

HOURS_PER_DAY = 24


@dataclass(frozen=True, slots=True)
class Span:
    """Hours `start` to `end` of a day (end exclusive, 1..24; wraps midnight when end <= start)."""

    start: int
    end: int
    slots: int

    @property
    def hours(self) -> tuple[int, ...]:
        length = (self.end - self.start) % HOURS_PER_DAY or HOURS_PER_DAY
        return tuple((self.start + i) % HOURS_PER_DAY for i in range(length))

    def label(self) -> str:
        return f"{self.start:02d}:00-{self.end:02d}:00"


def cut_day(needs: Sequence[int], max_windows: int) -> list[Span]:
    """At most `max_windows` spans covering the 24 hours, each sized to the peak need in it."""
    if len(needs) != HOURS_PER_DAY:
        raise ValueError(f"need {HOURS_PER_DAY} hourly needs, got {len(needs)}")
    if max_windows < 1:
        raise ValueError("max_windows must be at least 1")
    runs = _runs(needs)
    if len(runs) == 1:
        return [Span(0, HOURS_PER_DAY, needs[0])]
    best: tuple[int, list[tuple[int, int]]] | None = None
    for offset in range(len(runs)):  # each run boundary as the start of the circular day
        rotated = runs[offset:] + runs[:offset]
        cost, cuts = _best_cut(rotated, max_windows)
        if best is None or cost < best[0] or (cost == best[0] and len(cuts) < len(best[1])):
            best = (cost, [(rotated[a][0], _peak(rotated[a:b])) for a, b in cuts])
    assert best is not None
    starts = best[1]
    spans = [
        Span(start, starts[(i + 1) % len(starts)][0] or HOURS_PER_DAY, slots)
        for i, (start, slots) in enumerate(starts)
    ]
    merged = _merge(spans)
    if len(merged) == 1:
        return [Span(0, HOURS_PER_DAY, merged[0].slots)]
    return sorted(merged, key=lambda s: s.start)


def _runs(needs: Sequence[int]) -> list[tuple[int, int, int]]:
    """(first hour, length, need) of each run of equal needs, the first starting at hour 0."""
    runs: list[tuple[int, int, int]] = []
    for hour, need in enumerate(needs):
        if runs and runs[-1][2] == need:
            first, length, _ = runs[-1]
            runs[-1] = (first, length + 1, need)
        else:
            runs.append((hour, 1, need))
    if len(runs) > 1 and runs[0][2] == runs[-1][2]:  # the day is circular
        first, length, need = runs.pop()
        runs[0] = (first, length + runs[0][1], need)
    return runs


def _peak(runs: Sequence[tuple[int, int, int]]) -> int:
    return max(r[2] for r in runs)


def _best_cut(
    runs: Sequence[tuple[int, int, int]], max_windows: int
) -> tuple[int, list[tuple[int, int]]]:
    """The cheapest cut of `runs` (linear) into at most `max_windows` consecutive groups."""
    n = len(runs)
    waste = [[0] * (n + 1) for _ in range(n + 1)]  # waste[a][b]: runs a..b-1 as one window
    for a in range(n):
        peak, hours, total = 0, 0, 0
        for b in range(a + 1, n + 1):
            _, length, need = runs[b - 1]
            peak = max(peak, need)
            hours += length
            total += need * length
            waste[a][b] = peak * hours - total
    inf = float("inf")
    k_max = min(max_windows, n)
    cost = [[inf] * (n + 1) for _ in range(k_max + 1)]
    back = [[0] * (n + 1) for _ in range(k_max + 1)]
    cost[0][0] = 0
    for k in range(1, k_max + 1):
        for b in range(1, n + 1):
            for a in range(k - 1, b):
                c = cost[k - 1][a] + waste[a][b]
                if c < cost[k][b]:
                    cost[k][b], back[k][b] = c, a
    best_k = min(range(1, k_max + 1), key=lambda k: (cost[k][n], k))
    cuts: list[tuple[int, int]] = []
    b = n
    for k in range(best_k, 0, -1):
        a = back[k][b]
        cuts.append((a, b))
        b = a
    return int(cost[best_k][n]), cuts[::-1]


def _merge(spans: list[Span]) -> list[Span]:
    """Neighbours of equal size as one span (the last and the first too, across midnight)."""
    out: list[Span] = []
    for span in spans:
        if out and out[-1].slots == span.slots:
            out[-1] = Span(out[-1].start, span.end, span.slots)
        else:
            out.append(span)
    if len(out) > 1 and out[0].slots == out[-1].slots:
        last = out.pop()
        out[0] = Span(last.start, out[0].end, last.slots)
    return out
