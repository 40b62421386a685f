"""The collector's HTTP/1.1 server for its WSGI app: small, and cheap per request.

The listener opens a connection per request and a task's end is a request of two events, so
the fixed cost per connection bounds the intake. The standard library's `wsgiref` behind
`ThreadingMixIn` spends it on a new thread per connection, an `email` parser for the headers
and several writes per answer: a do-nothing app served ~1,250 requests/s on this project's
2-core machine, ~2,800 with threads reused, ~10,000 here (bench/README.md).

What it does: one request per connection (answered with `Connection: close`), a body only by
`Content-Length` (none otherwise: the app answers 411 where it needs one), `Expect:
100-continue`, the head up to 64 KiB (else 431), a malformed head 400, the whole exchange
bounded by `timeout` per socket call, the answer in one `sendall`. Handler threads are kept
and reused: a connection goes to an idle one, a new one starts only when none is idle (no cap,
as before), and one idle for `idle_seconds` ends.
"""

from __future__ import annotations

import logging
import queue
import socket
import sys
import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote_to_bytes

from impactwatch.wsgi import WsgiApp

log = logging.getLogger(__name__)

MAX_HEAD = 64 * 1024
_DRAIN = 1 << 20  # unread body bytes read off before closing, so the client sees the answer
_Work = tuple[socket.socket, Any] | None  # a connection and its address; None: stop


class Refused(Exception):
    """A request refused before the app sees it: the status and a short reason."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def request_environ(
    head: bytes, server_name: Any, server_port: int, address: Any
) -> dict[str, Any]:
    """The WSGI environ of a request head (without `wsgi.input`), its body's length in
    `impactwatch.content_length` (0 without a Content-Length); `Refused` (400) if malformed."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise Refused("400 Bad Request", "malformed request line")
    method, target, protocol = parts
    path, _, query = target.partition("?")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": unquote_to_bytes(path).decode("latin-1"),
        "QUERY_STRING": query,
        "SERVER_NAME": str(server_name),
        "SERVER_PORT": str(server_port),
        "SERVER_PROTOCOL": protocol,
        "REMOTE_ADDR": str(address[0]) if address else "",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise Refused("400 Bad Request", "malformed header line")
        key = name.upper().replace("-", "_")
        key = key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{key}"
        value = value.strip()
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    length = 0
    if "CONTENT_LENGTH" in environ:
        try:
            length = int(environ["CONTENT_LENGTH"])
        except ValueError:
            raise Refused("400 Bad Request", "Content-Length is not a number") from None
        if length < 0:
            raise Refused("400 Bad Request", "Content-Length is negative")
    environ["impactwatch.content_length"] = length
    return environ


class ListeningServer:
    """What this server and the collector's event loop (intake_server.py) share: the app, the
    time a silent client is given, a socket bound on `host:port` when made (IPv6 if the host
    has a colon; port 0: a free one, `server_port`), and the name of their threads."""

    def __init__(self, app: Any, host: str, port: int, name: str, timeout: float) -> None:
        self.app = app
        self.timeout = timeout
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.socket = socket.create_server((host, port), family=family, backlog=512)
        self.server_address = self.socket.getsockname()
        self.server_port: int = self.server_address[1]
        self.thread_name = f"{name}-{self.server_port}"


def answer_head(status: str, headers: list[tuple[str, str]], length: int) -> bytes:
    """The head of an answer of `length` body bytes, `Connection: close`."""
    if not any(k.lower() == "content-length" for k, _ in headers):
        headers = [*headers, ("Content-Length", str(length))]
    lines = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in headers), "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def call_app(app: WsgiApp, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
    """Run a WSGI app to its whole answer; a 500 (logged) if it raised or never answered."""
    answer: list[Any] = []
    written: list[bytes] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        if exc_info is not None and answer:
            raise exc_info[1].with_traceback(exc_info[2])
        answer[:] = [status, headers]
        return written.append

    try:
        result: Iterable[bytes] = app(environ, start_response)
        try:
            chunks = [*written, *result]
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
    except Exception:
        log.exception("%s %s failed", environ["REQUEST_METHOD"], environ["PATH_INFO"])
        error = b'{"error": "internal error"}'
        return "500 Internal Server Error", [("Content-Type", "application/json")], error
    if not answer:
        log.error(
            "%s %s: the app never started a response",
            environ["REQUEST_METHOD"],
            environ["PATH_INFO"],
        )
        return "500 Internal Server Error", [], b""
    return answer[0], answer[1], b"".join(chunks)


class Body:
    """`wsgi.input`: the request body, `Content-Length` bytes at most, read as asked."""

    def __init__(self, conn: socket.socket, buffered: bytes, length: int) -> None:
        self._conn, self._buf, self.left = conn, buffered, length

    def read(self, size: int = -1) -> bytes:
        want = self.left if size is None or size < 0 else min(size, self.left)
        chunks, have = [self._buf[:want]], len(self._buf[:want])
        self._buf = self._buf[want:]
        while have < want:
            chunk = self._conn.recv(min(want - have, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            have += len(chunk)
        self.left -= have
        return b"".join(chunks)

    def readline(self, size: int = -1) -> bytes:
        line = b""
        while not line.endswith(b"\n") and (size < 0 or len(line) < size) and self.left:
            line += self.read(1)
        return line

    def readlines(self, hint: int = -1) -> list[bytes]:
        return list(iter(self.readline, b""))

    def __iter__(self) -> Any:
        return iter(self.readline, b"")


def _read_head(conn: socket.socket) -> tuple[bytes, bytes] | None:
    data = b""
    while True:
        end = data.find(b"\r\n\r\n")
        if end > MAX_HEAD or (end < 0 and len(data) > MAX_HEAD):
            raise Refused("431 Request Header Fields Too Large", "request head over 64 KiB")
        if end >= 0:
            return data[:end], data[end + 4 :]
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk


class WSGIServer(ListeningServer):
    """`serve_forever` / `shutdown` / `server_close`, like `socketserver`'s servers."""

    idle_seconds = 60.0

    def __init__(
        self, app: WsgiApp, host: str, port: int, *, name: str = "http", timeout: float = 30.0
    ) -> None:
        super().__init__(app, host, port, name, timeout)
        self._handoff: queue.SimpleQueue[_Work] = queue.SimpleQueue()
        self._idle = 0  # threads waiting on _handoff that no connection was promised to
        self._idle_lock = threading.Lock()
        self._stop = threading.Event()
        self._stopped = threading.Event()

    # --- accepting ----------------------------------------------------------------------------
    def serve_forever(self, poll_interval: float = 0.5) -> None:
        self._stopped.clear()
        self.socket.settimeout(poll_interval)
        try:
            while not self._stop.is_set():
                try:
                    conn, address = self.socket.accept()
                except TimeoutError:
                    continue
                except OSError:
                    if self._stop.is_set() or self.socket.fileno() < 0:
                        break
                    continue  # e.g. the client reset before accept, or out of descriptors
                self._dispatch((conn, address))
        finally:
            self._stopped.set()

    def shutdown(self) -> None:
        self._stop.set()
        self._stopped.wait(5)

    def server_close(self) -> None:
        self._stop.set()
        self.socket.close()
        with self._idle_lock:
            for _ in range(self._idle):
                self._handoff.put(None)
            self._idle = 0

    def _dispatch(self, work: _Work) -> None:
        with self._idle_lock:
            if self._idle:
                self._idle -= 1
                self._handoff.put(work)
                return
        threading.Thread(
            target=self._work, args=(work,), name=self.thread_name, daemon=True
        ).start()

    def _work(self, work: _Work) -> None:
        while work is not None:
            self._handle(*work)
            with self._idle_lock:
                self._idle += 1
            try:
                work = self._handoff.get(timeout=self.idle_seconds)
            except queue.Empty:
                with self._idle_lock:
                    try:  # promised one just as the wait ran out
                        work = self._handoff.get_nowait()
                    except queue.Empty:
                        self._idle -= 1
                        return

    # --- one exchange -------------------------------------------------------------------------
    def _handle(self, conn: socket.socket, address: Any) -> None:
        body: Body | None = None
        try:
            conn.settimeout(self.timeout)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                head = _read_head(conn)
                if head is None:
                    return
                environ = self._environ(conn, address, *head)
            except Refused as refused:
                self._send(conn, refused.status, [("Content-Type", "text/plain")], str(refused))
                return
            body = environ["wsgi.input"]
            if environ.get("HTTP_EXPECT", "").lower() == "100-continue" and body.left:
                conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            self._run_app(conn, environ)
        except OSError:  # reset, timed out: nothing to answer
            pass
        finally:
            self._close(conn, body)

    def _environ(
        self, conn: socket.socket, address: Any, head: bytes, rest: bytes
    ) -> dict[str, Any]:
        environ = request_environ(head, self.server_address[0], self.server_port, address)
        environ["wsgi.input"] = Body(conn, rest, environ["impactwatch.content_length"])
        return environ

    def _run_app(self, conn: socket.socket, environ: dict[str, Any]) -> None:
        status, headers, data = call_app(self.app, environ)
        self._send(conn, status, headers, data, head_only=environ["REQUEST_METHOD"] == "HEAD")

    @staticmethod
    def _send(
        conn: socket.socket,
        status: str,
        headers: list[tuple[str, str]],
        data: bytes | str,
        *,
        head_only: bool = False,
    ) -> None:
        body = data.encode() if isinstance(data, str) else data
        head = answer_head(status, headers, len(body))
        if head_only or not body:
            conn.sendall(head)
        elif len(body) < 65536:
            conn.sendall(head + body)
        else:  # no copy of a large body (/metrics)
            conn.sendall(head)
            conn.sendall(body)

    @staticmethod
    def _close(conn: socket.socket, body: Body | None) -> None:
        """Close after reading off a small unread body: closing on unread bytes resets the
        connection, and the client may lose the answer (a 401 or 413 before the body)."""
        try:
            conn.shutdown(socket.SHUT_WR)
            if body is not None and 0 < body.left <= _DRAIN:
                conn.settimeout(1.0)
                while body.left and body.read(65536):
                    pass
        except OSError:
            pass
        finally:
            conn.close()


def serve(app: WsgiApp, host: str, port: int, name: str) -> tuple[WSGIServer, threading.Thread]:
    """Start serving in a daemon thread; returns the server (its real port: server_port)."""
    server = WSGIServer(app, host, port, name=name)
    thread = threading.Thread(target=server.serve_forever, name=name, daemon=True)
    thread.start()
    return server, thread
