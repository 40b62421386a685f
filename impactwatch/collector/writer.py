"""Group commit: writes that arrive while one is in progress go to the database together.

Each caller hands in a job and blocks until the transaction holding it has committed (or
failed), so a caller that returns normally knows its job is stored. A caller that finds no
write in progress writes its job at once (no latency added when there is nothing to group);
jobs that arrive meanwhile wait, and when that write ends the oldest of their callers writes
all of them (up to `max_items`) in one call, in its own thread: no writer thread to hand off to.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

J = TypeVar("J")

# What one group write is told: the jobs, in arrival order. It returns one error (or None) per
# job; raising fails every job of the group with that error.
WriteGroup = Callable[[list[J]], Sequence[BaseException | None]]


class _Ticket(Generic[J]):
    __slots__ = ("done", "error", "job", "size", "wake")

    def __init__(self, job: J, size: int) -> None:
        self.job = job
        self.size = size
        self.done = False
        self.error: BaseException | None = None
        self.wake = threading.Event()  # set when done, or when it is this caller's turn to write


class GroupCommit(Generic[J]):
    """Combine concurrent `submit`s into group writes; `enabled=False` writes one job a call."""

    def __init__(
        self,
        write: WriteGroup[J],
        *,
        size: Callable[[J], int] = lambda _job: 1,
        max_items: int = 10_000,
        enabled: bool = True,
    ) -> None:
        self._write = write
        self._size = size
        self.max_items = max_items
        self.enabled = enabled
        self._lock = threading.Lock()
        self._queue: list[_Ticket[J]] = []
        self._busy = False  # a group is being written, or the next writer has been woken
        self.groups = 0  # group writes so far, and the jobs they held (jobs / groups: mean size)
        self.jobs = 0

    def submit(self, job: J) -> None:
        """Return once `job` is written; raise what its group's write raised."""
        ticket = _Ticket(job, self._size(job))
        with self._lock:
            self._queue.append(ticket)
            lead, self._busy = not self._busy, True
        if not lead:
            ticket.wake.wait()
        if not ticket.done:  # this caller writes the next group: its ticket first in the queue
            self._lead()
        if ticket.error is not None:
            raise ticket.error

    def _lead(self) -> None:
        """Write the oldest queued jobs as one group, then wake their callers and the next
        writer (each woken thread is one that has something to do: no thundering herd)."""
        with self._lock:
            group = self._take()
        errors: list[BaseException | None] = []
        try:
            errors = self._run(group)
        finally:
            if len(errors) != len(group):  # interrupted: nobody may think it stored
                errors = [RuntimeError("group write interrupted")] * len(group)
            with self._lock:
                for t, error in zip(group, errors, strict=True):
                    t.done, t.error = True, error
                self.groups += 1
                self.jobs += len(group)
                following = self._queue[0] if self._queue else None
                self._busy = following is not None
            for t in group:
                t.wake.set()
            if following is not None:
                following.wake.set()

    def _take(self) -> list[_Ticket[J]]:
        """The oldest queued jobs up to `max_items` (always at least one)."""
        if not self.enabled:
            return [self._queue.pop(0)]
        total, n = 0, 0
        for t in self._queue:
            if n and total + t.size > self.max_items:
                break
            total += t.size
            n += 1
        group = self._queue[:n]
        del self._queue[:n]
        return group

    def _run(self, group: list[_Ticket[J]]) -> list[BaseException | None]:
        try:
            errors = list(self._write([t.job for t in group]))
        except BaseException as exc:  # handed to every caller of the group, re-raised there
            return [exc] * len(group)
        if len(errors) != len(group):
            bug = RuntimeError(f"group write returned {len(errors)} results for {len(group)}")
            return [bug] * len(group)
        return errors
