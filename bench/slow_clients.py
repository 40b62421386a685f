"""Slow and oversized clients, and the probes that time a server meanwhile; loopback only, every
loop bounded in time. Shared by bench_slow_clients.py (impactwatch's services) and
bench_asgi_servers.py (ASGI servers side by side). (A helper module.)"""

from __future__ import annotations

import selectors
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

from bench_router_common import percentile

SLOW_HEAD = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 4000


@dataclass
class SlowResult:
    """What became of the slow connections: seconds from each one's first byte to the server
    closing it (or answering it, e.g. 408), and how many were never cut."""

    opened: int = 0
    refused: int = 0
    cut_after: list[float] = field(default_factory=list)
    answers: dict[str, int] = field(default_factory=dict)

    @property
    def held(self) -> int:
        return self.opened - len(self.cut_after)


def slow_heads(port: int, connections: int, seconds: float, stop: threading.Event) -> SlowResult:
    """Open `connections` to 127.0.0.1:`port`, each sending one byte of a request head per
    second, for at most `seconds`; record when the server cuts each."""
    result = SlowResult()
    selector = selectors.DefaultSelector()
    began: dict[socket.socket, float] = {}
    sent: dict[socket.socket, int] = {}
    for _ in range(connections):
        sock = socket.socket()
        sock.settimeout(2)
        try:
            sock.connect(("127.0.0.1", port))
            sock.send(SLOW_HEAD[:1])
        except OSError:
            result.refused += 1
            sock.close()
            continue
        sock.setblocking(False)
        began[sock], sent[sock] = time.monotonic(), 1
        selector.register(sock, selectors.EVENT_READ)
        result.opened += 1
    end = time.monotonic() + seconds
    next_tick = time.monotonic() + 1.0

    def cut(sock: socket.socket, answer: str) -> None:
        result.cut_after.append(time.monotonic() - began.pop(sock))
        result.answers[answer] = result.answers.get(answer, 0) + 1
        selector.unregister(sock)
        sock.close()

    while began and time.monotonic() < end and not stop.is_set():
        for key, _ in selector.select(timeout=min(0.05, max(next_tick - time.monotonic(), 0))):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                data = sock.recv(4096)
            except OSError:
                data = b""
            cut(sock, data.split(b"\r\n", 1)[0].decode(errors="replace")[:40] or "closed")
        if time.monotonic() >= next_tick:
            next_tick += 1.0
            for sock in list(began):
                try:
                    sock.send(SLOW_HEAD[sent[sock] : sent[sock] + 1])
                    sent[sock] += 1
                except BlockingIOError:
                    pass
                except OSError:
                    cut(sock, "reset on send")
    for sock in list(began):
        selector.unregister(sock)
        sock.close()
    selector.close()
    return result


@dataclass
class Probes:
    """Latencies of GET probes (failures and timeouts counted apart)."""

    latencies: list[float] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)

    def p(self, q: float) -> float:
        return percentile(self.latencies, q)

    @property
    def worst(self) -> float:
        return max(self.latencies, default=float("nan"))


def probe_loop(
    base_url: str, paths: list[str], every: float, stop: threading.Event, timeout: float = 5.0
) -> Probes:
    """GET each of `paths` in turn every `every` s on a new connection until `stop`."""
    out = Probes()
    n = 0
    while not stop.is_set():
        path = paths[n % len(paths)]
        n += 1
        began = time.perf_counter()
        try:
            with urllib.request.urlopen(f"{base_url}{path}", timeout=timeout) as resp:
                resp.read()
            out.latencies.append(time.perf_counter() - began)
        except urllib.error.HTTPError as exc:  # an answer (/healthz: 503 while stale)
            exc.read()
            out.latencies.append(time.perf_counter() - began)
        except OSError as exc:
            name = type(exc).__name__
            out.failures[name] = out.failures.get(name, 0) + 1
        stop.wait(max(every - (time.perf_counter() - began), 0.0))
    return out


def under_slow_clients(
    port: int,
    base_url: str,
    paths: list[str],
    connections: int,
    seconds: float,
    every: float = 0.15,
) -> tuple[SlowResult, Probes]:
    """Probes every `every` s while `connections` slow heads run for `seconds` (and not past
    the moment all of them were cut, plus one second)."""
    stop = threading.Event()
    probes: list[Probes] = []
    prober = threading.Thread(
        target=lambda: probes.append(probe_loop(base_url, paths, every, stop)), daemon=True
    )
    time.sleep(0.2)
    prober.start()
    slow = slow_heads(port, connections, seconds, stop)
    if slow.held == 0:
        stop.wait(1.0)
    stop.set()
    prober.join(10)
    return slow, probes[0] if probes else Probes()


@dataclass
class BigBodies:
    statuses: dict[str, int] = field(default_factory=dict)
    sent_mb: float = 0.0


def big_bodies(
    port: int,
    path: str,
    headers: dict[str, str],
    connections: int,
    body_bytes: int,
    hold: float,
    sample: Callable[[], None],
) -> BigBodies:
    """`connections` POSTs to `path` announcing `body_bytes`, each sending all but the last byte
    as fast as the server reads, then holding the connection open until `hold` s have passed
    since the start; `sample()` is called every 0.1 s meanwhile (to read the server's RSS)."""
    out = BigBodies()
    lock = threading.Lock()
    end = time.monotonic() + hold
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {body_bytes}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    chunk = b"x" * 65536

    def one() -> None:
        sent = 0
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=2)
        except OSError as exc:
            status = f"connect: {type(exc).__name__}"
        else:
            with sock:
                try:
                    sock.sendall(head.encode())
                    while sent < body_bytes - 1 and time.monotonic() < end:
                        try:
                            sent += sock.send(chunk[: body_bytes - 1 - sent])
                        except TimeoutError:
                            continue  # the server is not reading: keep the connection
                except OSError:
                    pass  # the server stopped reading: see what it answered
                sock.settimeout(max(end - time.monotonic(), 0.01))
                try:
                    data = sock.recv(4096)
                    status = data.split(b"\r\n", 1)[0].decode(errors="replace")[:40] or "closed"
                except TimeoutError:
                    status = "held open"
                except OSError as exc:
                    status = type(exc).__name__
        with lock:
            out.statuses[status] = out.statuses.get(status, 0) + 1
            out.sent_mb += sent / 2**20

    threads = [threading.Thread(target=one, daemon=True) for _ in range(connections)]
    for t in threads:
        t.start()
    while time.monotonic() < end:
        sample()
        time.sleep(0.1)
    for t in threads:
        t.join(max(end - time.monotonic(), 0) + 5)
    sample()
    return out
