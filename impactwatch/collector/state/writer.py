"""Group commit: writes that arrive while one is in progress go to the database together.

One writer thread writes jobs in arrival order. A job submitted while it is idle is written at
once; jobs that arrive during a write wait, and the next write takes all of them (up to
`max_items`) in one call. A caller either blocks until the transaction holding its job has
committed or failed (`submit`: the poller), or hands in a callback run by the writer thread
when it has (`submit_nowait`). Either way a caller told "done" knows its job is stored.
(The intake's event loop groups its own requests and writes them itself: intake_server.py.)
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

J = TypeVar("J")

# What one group write is told: the jobs, in arrival order. It returns one error (or None) per
# job; raising fails every job of the group with that error.
WriteGroup = Callable[[list[J]], Sequence[BaseException | None]]
# Told when a job's group has been written: None, or the error the job failed with.
Done = Callable[[BaseException | None], None]


class _Ticket(Generic[J]):
    __slots__ = ("done", "job", "size")

    def __init__(self, job: J, size: int, done: Done) -> None:
        self.job = job
        self.size = size
        self.done = done


class GroupCommit(Generic[J]):
    """Combine concurrent submissions into group writes; `enabled=False` writes one job a
    call. The writer thread starts with the first job and ends with `close`."""

    def __init__(
        self,
        write: WriteGroup[J],
        *,
        size: Callable[[J], int] = lambda _job: 1,
        max_items: int = 10_000,
        enabled: bool = True,
        name: str = "impactwatch-writer",
    ) -> None:
        self._write = write
        self._size = size
        self.max_items = max_items
        self.enabled = enabled
        self._name = name
        self._cond = threading.Condition(threading.Lock())
        self._queue: deque[_Ticket[J]] = deque()
        self._busy = False  # a group is being written
        self._closed = False
        self._thread: threading.Thread | None = None
        self.groups = 0  # group writes so far, and the jobs they held (jobs / groups: mean size)
        self.jobs = 0

    def submit(self, job: J) -> None:
        """Return once `job` is written; raise what its group's write raised."""
        written = threading.Event()
        outcome: list[BaseException | None] = []

        def done(error: BaseException | None) -> None:
            outcome.append(error)
            written.set()

        self.submit_nowait(job, done)
        written.wait()
        if outcome[0] is not None:
            raise outcome[0]

    def submit_nowait(self, job: J, done: Done) -> None:
        """Queue `job`; the writer thread calls `done(error or None)` once its group is
        written. `done` must be quick and must not submit (it runs on the writer thread)."""
        ticket = _Ticket(job, self._size(job), done)
        with self._cond:
            if self._closed:
                raise RuntimeError("the state DB writer is closed")
            self._queue.append(ticket)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._cond.notify()

    def count(self, jobs: int) -> None:
        """Count a group written by its caller, outside this writer."""
        with self._cond:
            self.groups += 1
            self.jobs += jobs

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop the writer thread."""
        with self._cond:
            self._closed = True
            self._cond.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return
                group = self._take()
                self._busy = True
            errors = self._written(group)
            with self._cond:
                self._busy = False
                self.groups += 1
                self.jobs += len(group)
            for ticket, error in zip(group, errors, strict=True):
                try:
                    ticket.done(error)
                except Exception:  # a caller's bug must not stop the writer
                    log.exception("a group commit callback failed")

    def _take(self) -> list[_Ticket[J]]:
        """The oldest queued jobs up to `max_items` (always at least one)."""
        if not self.enabled:
            return [self._queue.popleft()]
        group: list[_Ticket[J]] = []
        total = 0
        while self._queue:
            size = self._queue[0].size
            if group and total + size > self.max_items:
                break
            total += size
            group.append(self._queue.popleft())
        return group

    def _written(self, group: list[_Ticket[J]]) -> list[BaseException | None]:
        try:
            errors = list(self._write([t.job for t in group]))
        except BaseException as exc:  # handed to every caller of the group, raised there
            return [exc] * len(group)
        if len(errors) != len(group):
            bug = RuntimeError(f"group write returned {len(errors)} results for {len(group)}")
            return [bug] * len(group)
        return errors
