"""Usual durations: of each DAG's successful runs (seasonal), its tasks, and pool queue waits.

Enough history (what a learned value needs before it is used):
- a DAG's run duration: MIN_RUNS successful runs; the seasonal bucket of the run's start
  (seasons.py) is used once it holds MIN_BUCKET_RUNS of them, else all recent runs;
- a task's duration and offsets: MIN_TASK_RUNS successful tries;
- a pool's queue wait: MIN_WAITS tries queued in it.
Before that there is no learned value: no learned threshold, no prediction; the metrics say
how much history each one has (`impactwatch_baseline_history`).
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass

from impactwatch.collector.baselines.seasons import BUCKETS, bucket
from impactwatch.collector.baselines.window import Window, quantile

RUN_WINDOW = 32  # recent successful runs per DAG (all buckets)
BUCKET_WINDOW = 8  # recent successful runs per DAG and seasonal bucket
TASK_WINDOW = 16  # recent successful tries per task
POOL_WINDOW = 256  # recent queue waits per pool
MIN_RUNS = 5
MIN_BUCKET_RUNS = 4
MIN_TASK_RUNS = 3
MIN_WAITS = 5


@dataclass(frozen=True, slots=True)
class Usual:
    """A learned duration: median and p90 of `n` values, from the seasonal bucket or all."""

    median: float
    p90: float
    n: int
    seasonal: bool


class RunDurations:
    """A DAG's successful run durations: the last RUN_WINDOW, and the last BUCKET_WINDOW of
    each seasonal bucket it has run in. A bucket's row is made on its first run (a daily DAG
    fills 2 of the 48 rows, 64 bytes; an hourly one all of them, 1.5 KB). The usual duration
    of the last bucket asked for is cached until the next run (the scrape and the poll cycle
    ask for the same buckets: the runs in flight)."""

    __slots__ = ("_cached", "_meta", "_rows", "all")

    def __init__(self) -> None:
        self.all = Window(RUN_WINDOW)
        self._rows = array("f")  # BUCKET_WINDOW slots per bucket seen, in order of first use
        self._meta = bytearray()  # per bucket: row + 1 (0: none yet), filled, next slot
        self._cached: tuple[int, Usual | None] | None = None

    def add(self, start: float, duration: float) -> None:
        self.all.add(duration)
        self._cached = None
        b = bucket(start)
        if not self._meta:
            self._meta = bytearray(3 * BUCKETS)
        row = self._meta[3 * b]
        if row == 0:
            self._rows.frombytes(bytes(4 * BUCKET_WINDOW))  # BUCKET_WINDOW zeros
            row = self._meta[3 * b] = len(self._rows) // BUCKET_WINDOW
        slot = self._meta[3 * b + 2]
        self._rows[(row - 1) * BUCKET_WINDOW + slot] = duration
        self._meta[3 * b + 2] = (slot + 1) % BUCKET_WINDOW
        self._meta[3 * b + 1] = min(self._meta[3 * b + 1] + 1, BUCKET_WINDOW)

    def __len__(self) -> int:
        return len(self.all)

    def usual(self, start: float) -> Usual | None:
        """The usual duration of a run starting at `start`; None before MIN_RUNS."""
        b = bucket(start)
        if self._cached is not None and self._cached[0] == b:
            return self._cached[1]
        found = self._usual(b)
        self._cached = (b, found)
        return found

    def _usual(self, b: int) -> Usual | None:
        n = len(self.all)
        if n < MIN_RUNS:
            return None
        row, filled = (self._meta[3 * b], self._meta[3 * b + 1]) if self._meta else (0, 0)
        if filled >= MIN_BUCKET_RUNS:
            at = (row - 1) * BUCKET_WINDOW
            ordered = sorted(self._rows[at : at + filled])
            return Usual(quantile(ordered, 0.5), quantile(ordered, 0.9), filled, True)
        median, p90 = self.all.stats()
        return Usual(median, p90, n, False)


class TaskTimes:
    """A task's last TASK_WINDOW successful tries: duration, and start and end as offsets from
    its run's start; medians cached until the next try."""

    __slots__ = ("_next", "_stats", "rows")

    def __init__(self) -> None:
        self.rows = array("f")  # duration, start offset, end offset; row after row
        self._next = 0
        self._stats: tuple[float, float, float, float] | None = None

    def add(self, duration: float, start_offset: float, end_offset: float) -> None:
        if len(self.rows) < 3 * TASK_WINDOW:
            self.rows.extend((duration, start_offset, end_offset))
        else:
            at = 3 * self._next
            self.rows[at : at + 3] = array("f", (duration, start_offset, end_offset))
            self._next = (self._next + 1) % TASK_WINDOW
        self._stats = None

    def __len__(self) -> int:
        return len(self.rows) // 3

    def usual_end(self) -> float | None:
        """The median end offset alone (what a prediction needs; learner.Baselines.usual_ends
        keeps it per DAG); None before MIN_TASK_RUNS."""
        if len(self) < MIN_TASK_RUNS:
            return None
        return quantile(sorted(self.rows[2::3]), 0.5)

    def stats(self) -> tuple[float, float, float, float] | None:
        """(median duration, p90 duration, median start offset, median end offset); None
        before MIN_TASK_RUNS."""
        if len(self) < MIN_TASK_RUNS:
            return None
        if self._stats is None:
            durations = sorted(self.rows[0::3])
            self._stats = (
                quantile(durations, 0.5),
                quantile(durations, 0.9),
                quantile(sorted(self.rows[1::3]), 0.5),
                quantile(sorted(self.rows[2::3]), 0.5),
            )
        return self._stats


class PoolWaits:
    """Queue waits of a pool's recent tries."""

    __slots__ = ("window",)

    def __init__(self) -> None:
        self.window = Window(POOL_WINDOW)

    def add(self, wait: float) -> None:
        self.window.add(wait)

    def usual(self) -> Usual | None:
        if len(self.window) < MIN_WAITS:
            return None
        median, p90 = self.window.stats()
        return Usual(median, p90, len(self.window), False)
