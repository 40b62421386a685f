"""Keys by when they fall due, so a poll cycle touches only the ones whose time has come.

At 10,000 DAGs the writer cannot look at every data product and every DAG in every poll cycle
(metrics/state.py: breach checks, runs late to start). Each key is set to the moment it may
need looking at; `due(now)` gives the keys whose moment has passed, and they stay due until
they are set again (a product stays stale until its next update moves its due time). Pure.
"""

from __future__ import annotations

import heapq
from collections.abc import Set


class DueQueue:
    """A heap of (when, key) with stale entries dropped lazily, and the set of keys due."""

    __slots__ = ("_due", "_heap", "_when")

    def __init__(self) -> None:
        self._when: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self._due: set[str] = set()

    def set(self, key: str, when: float | None) -> None:
        """`key` falls due at `when` (None: never, until set again)."""
        self._due.discard(key)
        if when is None:
            self._when.pop(key, None)
            return
        self._when[key] = when
        heapq.heappush(self._heap, (when, key))
        if len(self._heap) > 2 * len(self._when) + 64:  # bounded: drop the stale entries
            self._heap = [(w, k) for k, w in self._when.items()]
            heapq.heapify(self._heap)

    def clear(self) -> None:
        self._when.clear()
        self._heap.clear()
        self._due.clear()

    def due(self, now: float) -> Set[str]:
        """Keys whose time is at or before `now` (and not set again since)."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            when, key = heapq.heappop(heap)
            if self._when.get(key) == when:
                self._due.add(key)
        return self._due

    def __len__(self) -> int:
        return len(self._when)
