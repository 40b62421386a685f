"""The bounded POST against real loopback sockets: every way a collector can fail, in time."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from impactwatch.airflow_listeners.config import ListenerConfig
from impactwatch.airflow_listeners.emitter import Emitter
from impactwatch.airflow_listeners.transport import TransportError, abort, post


@contextmanager
def server(answer: Callable[[socket.socket], None]) -> Iterator[str]:
    """A one-shot-per-connection TCP server on a free port; `answer` handles each client."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()
    seen: list[bytes] = []

    def loop() -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(5)
            data = b""
            while b"\r\n\r\n" not in data:
                data += client.recv(65536)
            seen.append(data)
            threading.Thread(target=answer, args=(client,), daemon=True).start()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1/events"
    finally:
        stop.set()
        thread.join(2)
        listener.close()


def reply(raw: bytes) -> Callable[[socket.socket], None]:
    def answer(client: socket.socket) -> None:
        client.sendall(raw)
        client.close()

    return answer


def silent(client: socket.socket) -> None:
    time.sleep(3)
    client.close()


def endless(client: socket.socket) -> None:
    """Headers promise a body that comes a byte at a time and never ends."""
    client.sendall(b"HTTP/1.1 202 Accepted\r\nContent-Length: 1000\r\n\r\n")
    for _ in range(100):
        time.sleep(0.05)
        try:
            client.sendall(b"x")
        except OSError:
            return
    client.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_202_with_its_body() -> None:
    raw = b'HTTP/1.1 202 Accepted\r\nContent-Length: 14\r\n\r\n{"accepted":1}'
    with server(reply(raw)) as url:
        response = post(url, b"{}", "tok", 2.0)
    assert response.status == 202 and response.body == b'{"accepted":1}'


def test_request_carries_token_length_and_path() -> None:
    captured: list[bytes] = []

    def answer(client: socket.socket) -> None:
        captured.append(client.recv(65536))
        client.sendall(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")
        client.close()

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve_once() -> None:
        client, _ = listener.accept()
        answer(client)

    thread = threading.Thread(target=serve_once, daemon=True)
    thread.start()
    post(f"http://127.0.0.1:{port}/base/v1/events?x=1", b'{"a":1}', "s3cret", 2.0)
    thread.join(2)
    listener.close()
    head = captured[0].decode()
    assert head.startswith("POST /base/v1/events?x=1 HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{port}\r\n" in head
    assert "Authorization: Bearer s3cret\r\n" in head and "Content-Length: 7\r\n" in head


def test_a_500_with_retry_after() -> None:
    raw = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\nContent-Length: 2\r\n\r\n{}"
    with server(reply(raw)) as url:
        response = post(url, b"{}", None, 2.0)
    assert response.status == 503 and response.retry_after == 5.0


def test_connection_refused_fails_at_once() -> None:
    started = time.perf_counter()
    with pytest.raises(TransportError, match="cannot connect"):
        post(f"http://127.0.0.1:{free_port()}/v1/events", b"{}", None, 2.0)
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize("answer", [silent, endless], ids=["black-hole", "endless-response"])
def test_a_silent_or_endless_collector_costs_at_most_the_timeout(
    answer: Callable[[socket.socket], None],
) -> None:
    with server(answer) as url:
        started = time.perf_counter()
        with pytest.raises(TransportError, match="timed out"):
            post(url, b"{}", None, 0.3)
        took = time.perf_counter() - started
    assert 0.3 <= took < 0.45


def test_abort_ends_an_exchange_from_another_thread() -> None:
    told: list[tuple[socket.socket | None, bool]] = []
    with server(silent) as url:
        started = time.perf_counter()
        timer = threading.Timer(0.1, lambda: abort(told[0][0]))  # type: ignore[arg-type]
        timer.start()
        with pytest.raises(TransportError):
            post(url, b"{}", None, 5.0, track=lambda sock, sent: told.append((sock, sent)))
        took = time.perf_counter() - started
    assert took < 0.5
    # told: connected, request sent, closed
    assert [sent for _, sent in told] == [False, True, False] and told[-1][0] is None


def test_a_body_cut_short_is_a_failure() -> None:
    raw = b"HTTP/1.1 202 Accepted\r\nContent-Length: 100\r\n\r\n{}"
    with server(reply(raw)) as url, pytest.raises(TransportError, match="mid-response"):
        post(url, b"{}", None, 2.0)


def test_garbage_is_not_an_http_response() -> None:
    with server(reply(b"SSH-2.0-OpenSSH\r\n\r\n")) as url, pytest.raises(TransportError):
        post(url, b"{}", None, 2.0)


# --- the emitter over this transport: what the collector's answer does to a batch ---------------
def answers(*raws: bytes) -> tuple[Callable[[socket.socket], None], list[bytes]]:
    """Each connection gets the next answer (the last one again when they run out); the
    bodies received, in order."""
    bodies: list[bytes] = []
    left = list(raws)

    def answer(client: socket.socket) -> None:
        data = b""
        client.settimeout(5)
        while b"\r\n\r\n" not in data:
            data += client.recv(65536)
        bodies.append(data.partition(b"\r\n\r\n")[2])
        client.sendall(left.pop(0) if len(left) > 1 else left[0])
        client.close()

    return answer, bodies


@contextmanager
def raw_server(answer: Callable[[socket.socket], None]) -> Iterator[str]:
    """Like `server`, but the whole request (head and body) is `answer`'s to read."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            answer(client)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1/events"
    finally:
        stop.set()
        thread.join(2)
        listener.close()


def emitter_for(url: str, tmp_path: Path) -> Emitter:
    config = ListenerConfig(
        url=url, request_timeout=2.0, batch_size=10, linger=0.01, backoff=10.0,
        state_dir=str(tmp_path),
    )  # fmt: skip
    return Emitter(config, flush_at_exit=False)


REFUSAL = b'{"error":"events[0].end_date: not a finite number"}'
BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: %d\r\n\r\n%s" % (len(REFUSAL), REFUSAL)
BUSY = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 0\r\nContent-Length: 2\r\n\r\n{}"
ACCEPTED = b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\n{}"
EVENT = {"type": "asset", "uri": "s3://b/k", "timestamp": 1795500000.0}


def test_a_batch_answered_400_is_dropped_logged_and_counted_never_sent_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    answer, bodies = answers(BAD_REQUEST, ACCEPTED)
    with raw_server(answer) as url:
        emitter = emitter_for(url, tmp_path)
        emitter.emit(EVENT)
        assert emitter.flush(5.0)  # nothing left to send: dropped
        time.sleep(0.3)
    assert len(bodies) == 1
    assert emitter.stats.dropped == {"rejected": 1} and emitter.stats.failed_sends == 0
    (line,) = [r.getMessage() for r in caplog.records if "rejected" in r.getMessage()]
    assert "events[0].end_date: not a finite number" in line


def test_a_batch_answered_503_is_kept_and_sent_again_until_accepted(tmp_path: Path) -> None:
    answer, bodies = answers(BUSY, BUSY, ACCEPTED)
    with raw_server(answer) as url:
        emitter = emitter_for(url, tmp_path)
        emitter.emit(EVENT)
        deadline = time.monotonic() + 10
        while emitter.stats.sent < 1:  # (a flush in back-off would leave the batch behind)
            assert time.monotonic() < deadline, "never accepted"
            time.sleep(0.02)
    assert len(bodies) == 3 and bodies[0] == bodies[1] == bodies[2]  # the same batch, kept
    assert emitter.stats.sent == 1 and emitter.stats.dropped == {}
    assert emitter.stats.failed_sends == 2
