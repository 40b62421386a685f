"""Serving an ASGI app with uvicorn, with the limits a server on a network needs.

uvicorn gives the HTTP protocol, keep-alive and graceful shutdown. What it does not give, and
this module adds with one protocol subclass (`DeadlineProtocol`), is a deadline for receiving a
whole request: uvicorn's keep-alive timer restarts on every byte, so a client sending one byte a
second holds a connection forever, and its `limit_concurrency` answers 503 to everyone once such
clients fill it. Here:

- a connection whose request head is not complete `header_timeout` seconds after its first
  byte (or after the connection opened, for the first request) is answered 408 and closed;
- a request whose body is not complete `request_timeout` seconds after its first byte is cut
  the same way (the app's `receive()` then returns `http.disconnect`);
- a request head larger than `max_head_bytes` is answered 431 and closed;
- connections beyond `max_connections` are closed as soon as they open, so the ones already
  served keep being served.

Why uvicorn and this subclass rather than another server: docs/design-notes.md, "Serving HTTP".
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from dataclasses import dataclass
from typing import Any

import uvicorn
from pydantic import BaseModel, Field, field_validator
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger(__name__)


def _canned(status: bytes, text: bytes) -> bytes:
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: " + str(len(text)).encode() + b"\r\nconnection: close\r\n\r\n" + text
    )


REQUEST_TIMEOUT = _canned(b"408 Request Timeout", b"request not received in time\n")
HEAD_TOO_LARGE = _canned(b"431 Request Header Fields Too Large", b"request head too large\n")


@dataclass(frozen=True)
class ServerLimits:
    """What one server accepts; each service exposes these as settings (README, settings)."""

    max_connections: int = 1000
    header_timeout: float = 10.0
    request_timeout: float = 30.0
    keepalive_timeout: float = 5.0
    max_head_bytes: int = 65_536


class ServedSettings(BaseModel):
    """The settings every served service has: where it listens and its `ServerLimits`. Mixed
    into each service's settings model, so each reads them under its own environment prefix."""

    listen: str = Field("127.0.0.1:9464", description="HOST:PORT to serve on")
    max_connections: int = Field(
        1000, gt=0, description="Open HTTP connections at most; more are closed at once"
    )
    header_timeout: float = Field(
        10.0, gt=0, description="Seconds a request's head may take from its first byte"
    )
    request_timeout: float = Field(
        30.0, gt=0, description="Seconds a whole request may take from its first byte"
    )
    keepalive_timeout: float = Field(
        5.0, gt=0, description="Seconds an idle keep-alive connection stays open"
    )

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        _host, sep, port = value.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
            raise ValueError(f"{value!r} is not HOST:PORT (e.g. 127.0.0.1:9464)")
        return value

    def listen_address(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host or "127.0.0.1", int(port)

    def server_limits(self) -> ServerLimits:
        return ServerLimits(
            max_connections=self.max_connections,
            header_timeout=self.header_timeout,
            request_timeout=self.request_timeout,
            keepalive_timeout=self.keepalive_timeout,
        )


class DeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with receipt deadlines, a head-size cap and a connection cap.

    `limits` is set on a subclass made per server (`_protocol_for`)."""

    limits: ServerLimits = ServerLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._request_started = 0.0
        self._in_head = True  # between requests or receiving a head; False while a body comes
        self._head_bytes = 0
        self._boundary = False  # a head or a message ended in the chunk being parsed

    # -- connection ---------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            log.warning("connection refused: %d open (max_connections)", len(self.connections))
            transport.abort()
            return
        self._request_started = self.loop.time()
        self._arm(self.limits.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._boundary = False
        super().data_received(data)
        # Counted after parsing, and not for a chunk in which a head or a message ended: it may
        # carry a body. So a head is cut within one chunk (at most 256 KiB) of the limit.
        if self._in_head and not self._boundary and not self.transport.is_closing():
            self._head_bytes += len(data)
            if self._head_bytes > self.limits.max_head_bytes:
                self._cut(HEAD_TOO_LARGE)

    # -- parser callbacks -----------------------------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:  # a follow-up request on a kept-alive connection
            self._request_started = self.loop.time()
            self._arm(self.limits.header_timeout)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._in_head, self._boundary, self._head_bytes = False, True, 0
        left = self._request_started + self.limits.request_timeout - self.loop.time()
        self._arm(max(left, 0.0))

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()
        self._in_head, self._boundary = True, True

    # -- deadlines ------------------------------------------------------------------------------
    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._late)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _late(self) -> None:
        self._deadline = None
        self._cut(REQUEST_TIMEOUT)

    def _cut(self, answer: bytes) -> None:
        """Answer (unless a response is already under way) and close the connection."""
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is None or cycle.response_complete or not cycle.response_started:
            self.transport.write(answer)
            if cycle is not None and not cycle.response_complete:
                cycle.response_complete = True  # the app's own answer, if any, goes nowhere
                cycle.disconnected = True
                cycle.message_event.set()
        self.transport.close()


def _protocol_for(limits: ServerLimits) -> type[DeadlineProtocol]:
    return type("DeadlineProtocol", (DeadlineProtocol,), {"limits": limits})


class _Uvicorn(uvicorn.Server):
    """uvicorn's server that tells a waiting thread when it listens (or failed to start)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets=sockets)
        finally:
            self.ready.set()


def _listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named: asyncio sets TCP_NODELAY only on accepted sockets of that protocol;
    # without it every answer on a kept-alive connection waits ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


class Server:
    """An ASGI app on `host:port` (0 = a free port), served by uvicorn with `limits`."""

    def __init__(self, app: Any, host: str, port: int, limits: ServerLimits, *, name: str) -> None:
        self.name = name
        self.limits = limits
        self._socket = _listening_socket(host, port)
        self.host = host
        self.port: int = self._socket.getsockname()[1]
        config = uvicorn.Config(
            app,
            http=_protocol_for(limits),
            lifespan="off",
            timeout_keep_alive=max(int(limits.keepalive_timeout), 1),
            timeout_graceful_shutdown=5,
            backlog=min(limits.max_connections, 2048),
            log_config=None,
            access_log=False,
            server_header=False,
        )
        self._server = _Uvicorn(config)
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 10.0) -> None:
        """Serve on a background thread; return once listening."""
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, name=self.name
        )
        self._thread.daemon = True
        self._thread.start()
        if not self._server.ready.wait(timeout) or not self._server.started:
            self.stop()
            raise RuntimeError(f"{self.name}: server did not start on {self.host}:{self.port}")
        log.info("%s listening on %s:%d", self.name, self.host, self.port)

    def run(self) -> None:
        """Serve in this thread until SIGINT or SIGTERM."""
        log.info("%s listening on %s:%d", self.name, self.host, self.port)
        self._server.run(sockets=[self._socket])

    def stop(self, timeout: float = 10.0) -> None:
        """Stop accepting, let requests in flight finish (bounded), close the socket."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                self._server.force_exit = True
                self._thread.join(timeout)
        self._socket.close()
