"""`impactwatch.serving.Server`: uvicorn with receipt deadlines, a head cap and a connection cap,
tried with real sockets as slow, silent, greedy and ordinary clients would."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from impactwatch.serving import Server, ServerLimits

pytestmark = pytest.mark.integration


class EchoApp:
    """Answers GET with "ok"; POST with the length of the body it read (or notes a disconnect)."""

    def __init__(self) -> None:
        self.disconnects = 0

    async def __call__(self, scope: dict, receive, send) -> None:  # type: ignore[no-untyped-def]
        assert scope["type"] == "http"
        body = b""
        if scope["method"] == "POST":
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    self.disconnects += 1
                    return
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
        text = b"ok" if scope["method"] == "GET" else str(len(body)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", str(len(text)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": text})


@pytest.fixture
def served() -> Iterator[tuple[Server, EchoApp]]:
    app = EchoApp()
    limits = ServerLimits(
        max_connections=20, header_timeout=0.5, request_timeout=1.0, keepalive_timeout=1.0
    )
    server = Server(app, "127.0.0.1", 0, limits, name="test-server")
    server.start()
    try:
        yield server, app
    finally:
        server.stop()


def _connect(server: Server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    return sock


def _answer(sock: socket.socket) -> bytes:
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
            if b"\r\n\r\n" in data:
                head, _, rest = data.partition(b"\r\n\r\n")
                length = [
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ]
                if length and len(rest) >= length[0]:
                    break
    except (ConnectionResetError, TimeoutError):
        pass
    return data


def _get(server: Server) -> tuple[bytes, float]:
    start = time.monotonic()
    with _connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return _answer(sock), time.monotonic() - start


def test_answers_and_stops(served: tuple[Server, EchoApp]) -> None:
    server, _app = served
    answer, _ = _get(server)
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"ok")


def test_silent_connection_is_cut_at_header_timeout(served: tuple[Server, EchoApp]) -> None:
    server, _app = served
    with _connect(server) as sock:
        start = time.monotonic()
        answer = _answer(sock)
        waited = time.monotonic() - start
    assert answer.startswith(b"HTTP/1.1 408")
    assert 0.4 <= waited < 1.5


def test_trickled_head_is_cut_while_others_are_served(served: tuple[Server, EchoApp]) -> None:
    server, _app = served
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 200 + b"\r\n\r\n"
    slow = [_connect(server) for _ in range(10)]
    stop = threading.Event()

    def trickle() -> None:
        for i in range(len(head)):
            if stop.is_set():
                return
            for sock in slow:
                with contextlib.suppress(OSError):
                    sock.send(head[i : i + 1])
            time.sleep(0.05)

    worker = threading.Thread(target=trickle)
    start = time.monotonic()
    worker.start()
    try:
        latencies = []
        for _ in range(5):
            answer, took = _get(server)
            assert answer.startswith(b"HTTP/1.1 200")
            latencies.append(took)
            time.sleep(0.05)
        answers = [_answer(sock) for sock in slow]
        cut_after = time.monotonic() - start
    finally:
        stop.set()
        worker.join()
        for sock in slow:
            sock.close()
    assert max(latencies) < 0.1
    assert all(a.startswith(b"HTTP/1.1 408") for a in answers), answers
    assert cut_after < 1.5  # header_timeout 0.5 s, not the 10 s the head would take


def test_trickled_body_is_cut_at_request_timeout(served: tuple[Server, EchoApp]) -> None:
    server, app = served
    with _connect(server) as sock:
        sock.sendall(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
        start = time.monotonic()
        sock.settimeout(0.1)
        answer = b""
        while time.monotonic() - start < 3 and not answer:
            try:
                sock.send(b"x")
                answer = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
        waited = time.monotonic() - start
    assert answer.startswith(b"HTTP/1.1 408")
    assert 0.8 <= waited < 1.6
    deadline = time.monotonic() + 2
    while app.disconnects == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert app.disconnects == 1  # the app saw http.disconnect, not a truncated body


def test_large_body_sent_fast_is_taken_whole(served: tuple[Server, EchoApp]) -> None:
    server, _app = served
    body = b"y" * 1_000_000
    with _connect(server) as sock:
        sock.sendall(
            b"POST /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
        )
        answer = _answer(sock)
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"1000000")


def test_keep_alive_serves_several_requests(served: tuple[Server, EchoApp]) -> None:
    server, _app = served
    with _connect(server) as sock:
        for _ in range(3):
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert _answer(sock).startswith(b"HTTP/1.1 200")
            time.sleep(0.3)  # idle less than the keep-alive and header timeouts


def test_oversized_head_is_refused(served: tuple[Server, EchoApp]) -> None:
    server, _app = served
    with _connect(server) as sock:
        with contextlib.suppress(OSError):
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"z" * 200_000)
        answer = _answer(sock)
    assert answer.startswith(b"HTTP/1.1 431")


def test_connections_beyond_the_cap_are_closed_and_the_rest_served(
    served: tuple[Server, EchoApp],
) -> None:
    server, _app = served
    held = [_connect(server) for _ in range(19)]
    try:
        time.sleep(0.1)
        answer, _ = _get(server)  # the 20th connection: still served
        assert answer.startswith(b"HTTP/1.1 200")
        held.append(_connect(server))  # the 20th, held
        extra = _connect(server)
        try:
            extra.settimeout(2)
            refused = extra.recv(100)
        except (ConnectionResetError, OSError):
            refused = b""
        finally:
            extra.close()
        assert refused == b""  # closed at once, no answer
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.1)
    answer, _ = _get(server)
    assert answer.startswith(b"HTTP/1.1 200")
