"""A bounded queue of events and one sender thread: hooks enqueue and return at once.

The thread sends batches (up to `batch_size` events, or what came within `linger`). A failed
send keeps its events (up to `queue_size`, oldest dropped first) and starts a back-off shared
with the host's other processes.

`flush(timeout)` waits at most `timeout` for the queue to drain. A task process flushes once,
at its end, with `answered=False`: the request is handed to the kernel, the collector's answer
is not awaited (the process is about to exit and could not retry anyway). When the sender
thread is idle and the collector's address is known, the flushing thread sends it itself: a
task's end then costs one connect and one send, whatever the collector's speed, and depends
on no other thread being scheduled on a busy host. A flush that runs out of time counts as a
failure, so the host's next task processes skip the collector for the back-off period.
"""

from __future__ import annotations

import _thread
import atexit
import contextlib
import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from impactwatch.airflow_listeners import wire
from impactwatch.airflow_listeners.backoff import Backoff
from impactwatch.airflow_listeners.config import ListenerConfig
from impactwatch.airflow_listeners.transport import (
    Address,
    Response,
    TransportError,
    abort,
    post,
    resolve,
    send,
)

log = logging.getLogger("impactwatch.listener")

Poster = Callable[..., Response]  # transport.post's signature
Sender = Callable[..., None]  # transport.send's


@dataclass
class Stats:
    """What this process did; `dropped` is by reason (queue_full, rejected, hook_error)."""

    queued: int = 0
    sent: int = 0  # acknowledged by the collector
    unacknowledged: int = 0  # sent at a process's end, answer not awaited
    failed_sends: int = 0
    flush_timeouts: int = 0
    dropped: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: str, n: int = 1) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + n


class Emitter:
    def __init__(
        self,
        config: ListenerConfig,
        *,
        poster: Poster = post,
        sender: Sender = send,
        resolver: Callable[[str], Address] = resolve,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.monotonic,
        flush_at_exit: bool = True,
    ) -> None:
        self.config = config
        self.poster = poster
        self.sender = sender
        self.resolver = resolver
        self._address: Address | None = None  # resolved by the sender thread; kept across fork
        self.backoff = backoff or Backoff(config.backoff_file, config.backoff, config.max_backoff)
        self.clock = clock
        self.flush_at_exit = flush_at_exit
        self._reset()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        """Fresh state; in a forked child the parent's thread is gone and its events are its own."""
        self._cond = threading.Condition()
        self._queue: deque[wire.Event] = deque()
        self._inflight = 0  # events in the request being made (by the sender thread)
        self._direct = 0  # events a flushing thread is sending itself
        self._sent = False  # that request is with the kernel, its answer not read yet
        self._live: socket.socket | None = None  # its connection
        self._detached = False  # we cut it after sending: not a failure
        self._first_at: float | None = None
        self._flushing = 0
        self._started = False
        self._exit_hook = False
        self._failing = False
        self._gave_up = False  # the last flush left events behind
        self.stats = Stats()

    # --- called by hooks --------------------------------------------------------------------
    def emit(self, event: wire.Event) -> None:
        """Queue one event; never blocks on the network."""
        with self._cond:
            if len(self._queue) >= self.config.queue_size:
                self._queue.popleft()
                self.stats.drop("queue_full")
            self._queue.append(event)
            self.stats.queued += 1
            if self._first_at is None:
                self._first_at = self.clock()
            if not self._started:
                self._start()
            elif len(self._queue) == 1 or len(self._queue) >= self.config.batch_size:
                self._cond.notify_all()

    def count_drop(self, reason: str) -> None:
        with self._cond:
            self.stats.drop(reason)

    def flush(self, timeout: float, *, answered: bool = True) -> bool:
        """Wait up to `timeout` s until everything queued is sent (and, if `answered`,
        acknowledged); False if some is not."""
        deadline = self.clock() + timeout
        with self._cond:
            if self._drained(answered):
                self._gave_up = False
                return True
            self._gave_up = True
            if self.backoff.remaining() > 0 or timeout <= 0:
                self._left_behind("collector in back-off")
                return False
            if not answered and not self._inflight and self._address is not None:
                direct = self._take()
                self._direct = len(direct)
            else:
                direct = []
        if direct:
            return self._send_directly(direct, deadline)
        with self._cond:
            failures = self.stats.failed_sends
            self._flushing += 1
            self._cond.notify_all()
            try:
                while not self._drained(answered):
                    left = deadline - self.clock()
                    if left <= 0 or self.stats.failed_sends != failures:
                        break
                    self._cond.wait(left)
            finally:
                self._flushing -= 1
            if self._drained(answered):
                self._gave_up = False
                return True
            if self.stats.failed_sends == failures:  # out of time: a slow or silent collector
                self.stats.flush_timeouts += 1
                self.stats.failed_sends += 1
                self._failing = True
                self.backoff.failed()
                why = f"timed out after {timeout * 1000:.0f} ms"
            else:
                why = "collector unavailable"
            self._cut(detach=False)
            self._left_behind(why)
            return False

    def _drained(self, answered: bool) -> bool:
        if self._queue or self._direct:
            return False
        return not self._inflight or (self._sent and not answered)

    def _take(self) -> list[wire.Event]:
        """The next batch off the queue (lock held)."""
        n = min(len(self._queue), self.config.batch_size)
        batch = [self._queue.popleft() for _ in range(n)]
        self._first_at = self.clock() if self._queue else None
        return batch

    def _send_directly(self, batch: list[wire.Event], deadline: float) -> bool:
        """Send from this thread without awaiting the answer, until the queue is empty."""
        assert self._address is not None
        while batch:
            left = deadline - self.clock()
            try:
                if left <= 0:
                    raise TransportError("timed out")
                body = wire.encode(batch)
                self.sender(self.config.url, self._address, body, self.config.token, left)
            except TransportError as exc:
                with self._cond:
                    self._direct = 0
                    self._keep(batch)
                    if self.clock() >= deadline:  # out of the flush's time, as in `flush`
                        self.stats.flush_timeouts += 1
                self._send_failed(str(exc), len(batch), None, quiet=True)
                with self._cond:
                    self._left_behind(str(exc))
                return False
            with self._cond:
                self.stats.unacknowledged += len(batch)
                if self.backoff.succeeded() and self._failing:
                    log.info("impactwatch: collector reachable again")
                self._failing = False
                batch = self._take() if self._queue else []
                self._direct = len(batch)
                if not batch:
                    self._gave_up = False
                self._cond.notify_all()
        return True

    def _cut(self, *, detach: bool) -> None:
        """End the request in flight (lock held). A process must not exit with a connection
        open: Airflow's supervisor looks for the task process's exit once, when the last of its
        sockets closes, and else sleeps up to [workers] min_heartbeat_interval (5 s); closing a
        live TCP connection during the exit delays it just enough to lose that race."""
        if self._live is not None:
            self._detached = detach and self._sent
            abort(self._live)

    def _left_behind(self, why: str) -> None:
        n = len(self._queue) + (0 if self._sent else self._inflight)
        log.warning("impactwatch: %d event(s) not sent (%s); the poller will recover them", n, why)

    # --- the sender thread ------------------------------------------------------------------
    def _start(self) -> None:
        # A raw thread: threading.Thread.start() waits until the thread runs, which on a busy
        # host can cost a task milliseconds at its first hook.
        _thread.start_new_thread(self._run, ())
        self._started = True
        if self.flush_at_exit and not self._exit_hook:
            self._exit_hook = True
            atexit.register(self._at_exit)

    def _at_exit(self) -> None:
        """Send what is left (unless a flush already gave up), then cut what awaits an answer."""
        with contextlib.suppress(Exception):  # at exit, nothing is worth a traceback
            if not self._gave_up:
                self.flush(self.config.exit_timeout, answered=False)
            with self._cond:
                self._cut(detach=True)

    def _track(self, sock: socket.socket | None, sent: bool) -> None:
        with self._cond:
            self._live, self._sent = sock, sent
            if sent:
                self._cond.notify_all()

    def _next_batch(self) -> list[wire.Event]:
        """Wait (lock held) for a batch worth sending: full, lingered, or flushed."""
        while True:
            if not self._queue or self._direct:
                self._cond.wait()
                continue
            pause = self.backoff.remaining()
            if pause > 0:
                self._cond.wait(min(pause, 1.0))
                continue
            linger = (self._first_at or 0.0) + self.config.linger - self.clock()
            if len(self._queue) < self.config.batch_size and not self._flushing and linger > 0:
                self._cond.wait(linger)
                continue
            batch = self._take()
            self._inflight, self._sent, self._detached = len(batch), False, False
            return batch

    def _run(self) -> None:
        if self._address is None:
            with contextlib.suppress(Exception):  # unresolvable: every send goes through here
                self._address = self.resolver(self.config.url)
        while True:
            with self._cond:
                batch = self._next_batch()
            try:
                failed = self._deliver(batch)
            except Exception as exc:  # a bug here must not kill the thread
                self._send_failed(f"{type(exc).__name__} in the sender", len(batch), None)
                failed = batch
            with self._cond:
                self._inflight, self._sent = 0, False
                if failed:
                    self._keep(failed)
                else:
                    if self.backoff.succeeded() and self._failing:
                        log.info("impactwatch: collector reachable again")
                    self._failing = False
                self._cond.notify_all()

    def _keep(self, events: list[wire.Event]) -> None:
        """Put failed events back in front, within the queue's bound (oldest dropped)."""
        room = self.config.queue_size - len(self._queue)
        if room < len(events):
            self.stats.drop("queue_full", len(events) - max(room, 0))
            events = events[len(events) - max(room, 0) :]
        self._queue.extendleft(reversed(events))
        if self._first_at is None and self._queue:
            self._first_at = self.clock()

    def _deliver(self, batch: list[wire.Event]) -> list[wire.Event]:
        """POST a batch; returns the events to retry (none on success or rejection)."""
        try:
            response = self.poster(
                self.config.url,
                wire.encode(batch),
                self.config.token,
                self.config.request_timeout,
                self._track,
            )
        except TransportError as exc:
            with self._cond:
                if self._detached:  # cut by us after it was sent
                    self.stats.unacknowledged += len(batch)
                    return []
            self._send_failed(str(exc), len(batch), None)
            return batch
        status = response.status
        if 200 <= status < 300:
            with self._cond:
                self.stats.sent += len(batch)
            return []
        if status == 413 and len(batch) > 1:
            half = len(batch) // 2
            return self._deliver(batch[:half]) + self._deliver(batch[half:])
        if status == 400 or status == 413:
            with self._cond:
                self.stats.drop("rejected", len(batch))
            reason = response.body[:200].decode("utf-8", "replace")
            log.warning("impactwatch: collector rejected %d event(s): %s", len(batch), reason)
            return []
        self._send_failed(f"HTTP {status}", len(batch), response.retry_after)
        return batch

    def _send_failed(
        self, why: str, n: int, retry_after: float | None, *, quiet: bool = False
    ) -> None:
        """Start (or keep) the shared back-off, then wake a waiting flush."""
        with self._cond:
            first = not self._failing
            self._failing = True
            if self.backoff.remaining() <= 0:
                self.backoff.failed(retry_after)
            self.stats.failed_sends += 1
            self._cond.notify_all()
        if first and not quiet:
            log.warning("impactwatch: cannot send %d event(s) to the collector: %s", n, why)
