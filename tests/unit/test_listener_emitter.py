"""The queue and sender thread: batching, bounded flushes, back-off shared across processes."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from impactwatch.airflow_listeners.backoff import Backoff
from impactwatch.airflow_listeners.config import ListenerConfig
from impactwatch.airflow_listeners.emitter import Emitter
from impactwatch.airflow_listeners.transport import Response, TransportError


class FakeCollector:
    """Stands in for the transport (`post`, `send`, `resolve`); `mode` decides each answer.

    hang: the request is sent and never answered (a black hole that accepts);
    stall: the connection is never made (a black hole that drops packets).
    `resolvable` False: the address is unknown, so nothing is sent from a flushing thread.
    """

    def __init__(self) -> None:
        self.mode = "ok"  # ok | refuse | hang | stall | 500 | 400 | 413-over-2
        self.resolvable = True
        self.batches: list[list[dict]] = []
        self.calls = 0
        self.senders: list[str] = []  # the thread of each send without an answer
        self.release = threading.Event()

    def resolve(self, url: str) -> tuple:
        if not self.resolvable:
            raise OSError("no such host")
        return (socket.AF_INET, ("127.0.0.1", 9))

    def send(self, url, address, body, token, timeout):  # type: ignore[no-untyped-def]
        self.calls += 1
        self.senders.append(threading.current_thread().name)
        if self.mode == "refuse":
            raise TransportError("cannot connect: Connection refused")
        if self.mode == "stall":
            time.sleep(timeout)
            raise TransportError("timed out")
        self.batches.append(json.loads(body)["events"])  # sent; whatever the answer

    def __call__(self, url, body, token, timeout, track):  # type: ignore[no-untyped-def]
        self.calls += 1
        events = json.loads(body)["events"]
        if self.mode == "refuse":
            raise TransportError("cannot connect: Connection refused")
        if self.mode == "hang":  # a real socket, so the emitter can cut it
            mine, theirs = socket.socketpair()
            with mine, theirs:
                self.batches.append(events)  # it got there; the answer never comes
                mine.settimeout(timeout)
                track(mine, True)
                with contextlib.suppress(TimeoutError):
                    mine.recv(1)  # returns b"" once cut
                track(None, False)
            raise TransportError("no answer")
        if self.mode == "stall":
            self.release.wait(timeout)
            raise TransportError("timed out")
        if self.mode == "413-over-2" and len(events) > 2:
            return Response(413)
        if self.mode in ("500", "400"):
            return Response(int(self.mode), retry_after=None, body=b'{"error":"nope"}')
        track(None, True)
        self.batches.append(events)
        track(None, False)
        return Response(202)

    @property
    def received(self) -> list[dict]:
        return [e for b in self.batches for e in b]


def event(i: int) -> dict:
    return {"type": "asset", "uri": f"s3://b/{i}", "timestamp": float(i)}


@pytest.fixture
def config(tmp_path: Path) -> ListenerConfig:
    return ListenerConfig(
        url="http://collector.invalid/v1/events",
        flush_timeout=0.04,
        exit_timeout=0.5,
        request_timeout=2.0,
        batch_size=500,
        linger=0.2,
        queue_size=100,
        backoff=10.0,
        state_dir=str(tmp_path),
    )


@pytest.fixture
def collector() -> Iterator[FakeCollector]:
    fake = FakeCollector()
    yield fake
    fake.release.set()


def make(config: ListenerConfig, collector: FakeCollector) -> Emitter:
    return Emitter(
        config,
        poster=collector,
        sender=collector.send,
        resolver=collector.resolve,
        flush_at_exit=False,
    )


def test_events_wait_for_a_batch_and_a_flush_sends_them_at_once(
    config: ListenerConfig, collector: FakeCollector
) -> None:
    emitter = make(replace(config, linger=30.0), collector)
    for i in range(3):
        emitter.emit(event(i))
    time.sleep(0.05)
    assert collector.calls == 0  # lingering for more
    assert emitter.flush(1.0)
    assert collector.batches == [[event(0), event(1), event(2)]]
    assert emitter.stats.sent == 3


def test_a_full_batch_goes_without_waiting(
    config: ListenerConfig, collector: FakeCollector
) -> None:
    emitter = make(replace(config, linger=30.0, batch_size=2), collector)
    for i in range(4):
        emitter.emit(event(i))
    deadline = time.monotonic() + 2
    while len(collector.received) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [len(b) for b in collector.batches] == [2, 2]


def test_a_collector_that_never_connects_costs_a_flush_its_timeout_then_nothing(
    config: ListenerConfig, collector: FakeCollector
) -> None:
    collector.mode = "stall"
    emitter = make(config, collector)
    emitter.emit(event(1))
    started = time.perf_counter()
    assert not emitter.flush(0.04, answered=False)
    first = time.perf_counter() - started
    assert 0.04 <= first < 0.5  # its timeout, give or take a busy CI host
    assert emitter.stats.flush_timeouts == 1
    # in back-off now: the next task's flush does not wait at all
    emitter.emit(event(2))
    started = time.perf_counter()
    assert not emitter.flush(0.04, answered=False)
    assert time.perf_counter() - started < 0.05  # no wait: in back-off


def test_a_task_end_sends_from_its_own_thread_and_awaits_no_answer(
    config: ListenerConfig, collector: FakeCollector
) -> None:
    emitter = make(replace(config, linger=30.0), collector)
    emitter.emit(event(1))
    emitter.emit(event(2))
    time.sleep(0.05)  # the sender thread resolved the address meanwhile
    started = time.perf_counter()
    assert emitter.flush(1.0, answered=False)
    assert time.perf_counter() - started < 0.5  # one send, not a wait for the timeout
    assert collector.received == [event(1), event(2)]
    assert collector.senders == [threading.current_thread().name]
    assert emitter.stats.unacknowledged == 2 and emitter.stats.sent == 0


def test_a_direct_send_that_fails_keeps_the_events_and_backs_off(
    config: ListenerConfig, collector: FakeCollector
) -> None:
    collector.mode = "refuse"
    emitter = make(replace(config, linger=30.0), collector)
    emitter.emit(event(1))
    time.sleep(0.05)
    assert not emitter.flush(0.04, answered=False)
    assert os.path.exists(config.backoff_file)
    collector.mode = "ok"
    assert not emitter.flush(0.04, answered=False)  # in back-off: not even tried
    assert collector.calls == 1


def test_without_an_address_the_sender_thread_sends_and_what_awaits_an_answer_is_cut(
    config: ListenerConfig, collector: FakeCollector
) -> None:
    collector.mode, collector.resolvable = "hang", False  # accepts, never answers
    emitter = make(config, collector)
    emitter.emit(event(1))
    started = time.perf_counter()
    assert emitter.flush(1.0, answered=False)  # sent: the answer is not awaited
    assert time.perf_counter() - started < 0.5
    assert collector.received == [event(1)]
    # the process exits: the request still awaiting its answer is cut, counted as sent
    emitter._at_exit()
    deadline = time.monotonic() + 1
    while emitter.stats.unacknowledged < 1:
        assert time.monotonic() < deadline, emitter.stats
        time.sleep(0.005)
    assert emitter.stats.failed_sends == 0 and not os.path.exists(config.backoff_file)


def test_a_stopping_scheduler_waits_for_the_answer(
    config: ListenerConfig, collector: FakeCollector
) -> None:
    collector.mode = "hang"
    emitter = make(config, collector)
    emitter.emit(event(1))
    started = time.perf_counter()
    assert not emitter.flush(0.04)
    assert 0.04 <= time.perf_counter() - started < 0.5
    assert emitter.stats.flush_timeouts == 1 and os.path.exists(config.backoff_file)


def test_the_back_off_is_shared_with_the_hosts_other_processes(
    config: ListenerConfig, collector: FakeCollector
) -> None:
    collector.mode = "refuse"
    first = make(config, collector)
    first.emit(event(1))
    assert not first.flush(1.0)
    assert os.path.exists(config.backoff_file)
    # a new task process (a new emitter, same file) skips the collector entirely
    calls = collector.calls
    second = make(config, collector)
    second.emit(event(2))
    started = time.perf_counter()
    assert not second.flush(1.0)
    assert time.perf_counter() - started < 0.05  # no wait: in back-off
    time.sleep(0.05)
    assert collector.calls == calls


def test_failed_events_are_kept_and_sent_when_the_collector_returns(
    config: ListenerConfig, collector: FakeCollector
) -> None:
    collector.mode = "500"
    # a back-off longer than the flush wait: exactly one failed send, however busy the machine
    emitter = make(replace(config, backoff=1.0, linger=0.0), collector)
    emitter.emit(event(1))
    emitter.emit(event(2))
    assert not emitter.flush(0.9)  # returns at the failed send; the wait only bounds it
    assert emitter.stats.failed_sends >= 1  # (+1 if the flush ran out first on a busy host)
    collector.mode = "ok"
    time.sleep(1.1)  # the back-off ends
    assert emitter.flush(1.0)
    assert collector.received == [event(1), event(2)]
    assert not os.path.exists(config.backoff_file)  # success clears the shared back-off


def test_doubling_back_off_honours_retry_after(tmp_path: Path) -> None:
    now = [1000.0]
    backoff = Backoff(str(tmp_path / "b"), base=10, cap=300, clock=lambda: now[0])
    assert [backoff.failed() for _ in range(7)] == [10, 20, 40, 80, 160, 300, 300]
    assert backoff.remaining() == 300
    assert backoff.failed(retry_after=5) == 5
    other = Backoff(str(tmp_path / "b"), base=10, cap=300, clock=lambda: now[0])
    assert other.remaining() == 5  # read from the shared file
    now[0] += 6
    assert other.remaining() == 0
    assert other.succeeded() and not (tmp_path / "b").exists()


def test_a_rejected_batch_is_dropped_and_counted_not_retried(
    config: ListenerConfig, collector: FakeCollector
) -> None:
    collector.mode = "400"
    emitter = make(config, collector)
    emitter.emit(event(1))
    assert emitter.flush(1.0)  # nothing left to send
    assert emitter.stats.dropped == {"rejected": 1}
    assert not os.path.exists(config.backoff_file)


def test_a_batch_too_large_is_split(config: ListenerConfig, collector: FakeCollector) -> None:
    collector.mode = "413-over-2"
    emitter = make(replace(config, linger=30.0), collector)
    for i in range(5):
        emitter.emit(event(i))
    assert emitter.flush(1.0)
    assert collector.received == [event(i) for i in range(5)]
    assert all(len(b) <= 2 for b in collector.batches)


def test_the_queue_is_bounded_oldest_dropped_first(
    config: ListenerConfig, collector: FakeCollector
) -> None:
    collector.mode = "refuse"
    emitter = make(replace(config, queue_size=3, linger=30.0), collector)
    for i in range(5):
        emitter.emit(event(i))
    assert emitter.stats.dropped == {"queue_full": 2}
    collector.mode = "ok"
    assert emitter.flush(1.0)
    assert collector.received == [event(2), event(3), event(4)]


def test_a_forked_child_starts_empty_with_its_own_thread(
    config: ListenerConfig, collector: FakeCollector, tmp_path: Path
) -> None:
    emitter = make(replace(config, linger=30.0), collector)
    emitter.emit(event(1))  # the parent's, and the parent's thread holds it
    out = tmp_path / "child"
    pid = os.fork()
    if pid == 0:  # the child: a task process forked by a worker
        code = 1
        try:
            queued_at_fork = emitter.stats.queued
            emitter.emit(event(2))
            ok = emitter.flush(1.0)
            out.write_text(json.dumps([queued_at_fork, ok, collector.received]))
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert status == 0
    queued_at_fork, ok, received = json.loads(out.read_text())
    assert queued_at_fork == 0 and ok and received == [event(2)]
    assert emitter.flush(1.0) and collector.received == [event(1)]  # the parent's, once
