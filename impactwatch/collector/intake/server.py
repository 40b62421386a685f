"""The collector's HTTP server: one asyncio event loop for every connection. The intake is
answered from the loop; other paths run the WSGI app on a few worker threads.

Why not the threaded server the router uses (`impactwatch/http_server.py`): the listener opens
a connection per request, and a task's end is a request of two events. With a thread per
request in flight, every socket call and every SQLite step that releases the GIL handed it to
another thread. At 8 clients, that was 18 context switches per request, and the collector
process spent about 550 us of CPU per request against 270 us for the same work done in one
thread (bench/README.md). Here one thread does it all: the HTTP work, the parsing, and the
writes, grouped (`Store.ingest_in_loop`: SQLite written in the loop, PostgreSQL awaited on the
loop's own asyncio connection, so its round trips overlap with serving other requests).

What it speaks is the threaded server's protocol (parsing shared, `impactwatch.http_server`):
- one request per connection, answered with `Connection: close`;
- a body only by `Content-Length`, `Expect: 100-continue` honoured;
- the head up to 64 KiB (else 431), a malformed head 400;
- a connection silent for `timeout` seconds is closed.

`POST /v1/events`:
- `CollectorApp.refusal` checks the token and the length before the body is read. On a 401,
  411 or 413, the unread body (up to 1 MiB) is read off so the client sees the answer.
- The body is parsed in the loop, or on a worker if it is large (a 5,000-event batch takes
  ~40 ms to validate). A bad body is a 400.
- The batch waits for the loop's one writer coroutine, which writes everything parsed since its
  last write as one group (what arrives during a write goes in the next one). It is answered
  202 once its group has committed, or 503 if the group failed or took over `WRITE_TIMEOUT`.
- Its metrics are observed without waiting for the lock a scrape holds
  (`MetricsState.apply_soon`).

Other paths (`/metrics`, `/healthz`, 404, 405) go to `workers` threads, so a slow scrape never
holds the loop: /metrics renders in ~0.5 s at 10,000 DAGs.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from impactwatch.collector.events import Batch
from impactwatch.http_server import (
    MAX_HEAD,
    ListeningServer,
    Refused,
    answer_head,
    call_app,
    request_environ,
)
from impactwatch.wsgi import Answer

if TYPE_CHECKING:
    from impactwatch.collector.http_app import CollectorApp

log = logging.getLogger(__name__)

INTAKE = "/v1/events"
PARSE_IN_LOOP = 64 * 1024  # larger bodies are parsed on a worker thread
OTHER_BODY_MAX = 64 * 1024  # what a path other than the intake may be sent
DRAIN_MAX = 1 << 20  # unread body bytes read off after an early answer, at most
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
WRITE_TIMEOUT = 30.0  # a PostgreSQL group write not done by then is abandoned (503s)

_HEAD, _BODY, _WORKING, _DRAIN, _DONE = range(5)


class CollectorServer(ListeningServer):
    """`serve_forever` / `shutdown` / `server_close`, like `socketserver`'s servers; the
    listening socket is bound when made (its real port: `server_port`)."""

    def __init__(
        self,
        app: CollectorApp,
        host: str,
        port: int,
        *,
        timeout: float = 30.0,
        workers: int = 4,
        name: str = "impactwatch-http",
    ) -> None:
        super().__init__(app, host, port, name, timeout)
        self.app: CollectorApp = app
        self.workers = ThreadPoolExecutor(workers, thread_name_prefix=self.thread_name)
        self.loop = asyncio.new_event_loop()
        self.exchanges: set[_Exchange] = set()
        self.pending: list[tuple[Batch, _Exchange]] = []  # parsed, waiting for the next write
        self._wake = asyncio.Event()
        self._stopped = threading.Event()
        self._closed = False

    def serve_forever(self) -> None:
        loop = self.loop
        asyncio.set_event_loop(loop)
        server: asyncio.Server | None = None
        writer: asyncio.Task[None] | None = None
        try:
            if not self._closed:
                server = loop.run_until_complete(
                    loop.create_server(lambda: _Exchange(self), sock=self.socket, backlog=512)
                )
                writer = loop.create_task(self._write_forever())
                loop.run_forever()
        except RuntimeError:  # stopped before it ran (shutdown raced the start)
            pass
        finally:
            if server is not None:
                server.close()
            if writer is not None:
                writer.cancel()
            for exchange in list(self.exchanges):
                exchange.abort()
            # the transports close, and the store's loop connection, before the loop does
            _settle(loop, self.app.service.store.close_in_loop())
            loop.close()
            self._stopped.set()

    async def _write_forever(self) -> None:
        """Write what was parsed as groups, one write at a time; what arrives during a write
        goes in the next one."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self.pending:
                pending, self.pending = self.pending, []
                try:
                    answers = await asyncio.wait_for(
                        self.app.store([batch for batch, _ in pending]), WRITE_TIMEOUT
                    )
                except TimeoutError:  # a black-holed state DB: 503, a new connection
                    log.warning("state DB: no answer within %.0f s, reconnecting", WRITE_TIMEOUT)
                    answers = [self.app.failed() for _ in pending]
                except Exception:  # a bug: answer, never leave a client hanging
                    log.exception("intake write failed")
                    answers = [self.app.failed() for _ in pending]
                for (_, exchange), answer in zip(pending, answers, strict=True):
                    exchange._answer(answer)

    def shutdown(self) -> None:
        """Stop serving (open connections are dropped) and wait for the loop to end."""
        self._closed = True
        with contextlib.suppress(RuntimeError):  # the loop has already closed
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._stopped.wait(5)

    def server_close(self) -> None:
        if not self._stopped.is_set():
            self.shutdown()
        self.socket.close()
        self.workers.shutdown(wait=False)


class _Exchange(asyncio.Protocol):
    """One connection: its request, then its answer."""

    def __init__(self, server: CollectorServer) -> None:
        self.server = server
        self.app = server.app
        self.loop = server.loop
        self.transport: asyncio.Transport | None = None
        self.state = _HEAD
        self.head = b""
        self.chunks: list[bytes] = []
        self.left = 0  # body bytes not yet received
        self.environ: dict[str, Any] = {}
        self.intake = False
        self.last = 0.0  # when the client last sent something
        self.timer: asyncio.TimerHandle | None = None

    # --- asyncio.Protocol ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server.exchanges.add(self)
        self.last = self.loop.time()
        self.timer = self.loop.call_later(self.server.timeout, self._expire)

    def connection_lost(self, exc: Exception | None) -> None:
        self.state = _DONE
        self.server.exchanges.discard(self)
        if self.timer is not None:
            self.timer.cancel()

    def data_received(self, data: bytes) -> None:
        self.last = self.loop.time()
        if self.state == _HEAD:
            self._head(data)
        elif self.state == _BODY:
            self._body(data)
        elif self.state == _DRAIN:
            self.left -= len(data)
            if self.left <= 0:
                self._close()
        # _WORKING, _DONE: anything past the body is ignored

    def eof_received(self) -> bool:
        """The client is done sending: keep the connection for the answer being made."""
        return self.state == _WORKING

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # --- the request --------------------------------------------------------------------------
    def _head(self, data: bytes) -> None:
        self.head += data
        end = self.head.find(b"\r\n\r\n")
        if end > MAX_HEAD or (end < 0 and len(self.head) > MAX_HEAD):
            self._refuse(Refused("431 Request Header Fields Too Large", "request head over 64 KiB"))
            return
        if end < 0:
            return
        head, rest = self.head[:end], self.head[end + 4 :]
        self.head = b""
        assert self.transport is not None
        try:
            self.environ = environ = request_environ(
                head,
                self.server.server_address[0],
                self.server.server_port,
                self.transport.get_extra_info("peername"),
            )
        except Refused as refused:
            self._refuse(refused)
            return
        self.left = environ["impactwatch.content_length"]
        self.intake = environ["PATH_INFO"] == INTAKE and environ["REQUEST_METHOD"] == "POST"
        if self.intake:
            refusal = self.app.refusal(environ)
        elif self.left > OTHER_BODY_MAX:
            refusal = ("413 Content Too Large", [("Content-Type", "text/plain")], b"body too large")
        else:
            refusal = None
        if refusal is not None:
            self._answer(refusal, drain=True)
            if self.state == _DRAIN and rest:
                self.data_received(rest)
            return
        if self.left and not rest and environ.get("HTTP_EXPECT", "").lower() == "100-continue":
            self.transport.write(CONTINUE)
        self.state = _BODY
        self._body(rest)

    def _body(self, data: bytes) -> None:
        if data:
            take = data[: self.left]
            self.chunks.append(take)
            self.left -= len(take)
        if self.left > 0:
            return
        self.state = _WORKING
        body = b"".join(self.chunks)
        self.chunks = []
        if not self.intake:
            self.environ["wsgi.input"] = io.BytesIO(body)
            work = self.loop.run_in_executor(self.server.workers, call_app, self.app, self.environ)
            work.add_done_callback(self._answered)
        elif len(body) > PARSE_IN_LOOP:
            work = self.loop.run_in_executor(self.server.workers, self.app.take, body)
            work.add_done_callback(self._parsed)
        else:
            self._submit(self.app.take(body))

    def _parsed(self, work: asyncio.Future[Batch | Answer]) -> None:
        self._submit(work.result())

    def _submit(self, taken: Batch | Answer) -> None:
        if not isinstance(taken, Batch):
            self._answer(taken)
            return
        self.server.pending.append((taken, self))
        self.server._wake.set()

    def _answered(self, work: asyncio.Future[Answer]) -> None:
        self._answer(work.result())

    # --- the answer ---------------------------------------------------------------------------
    def _refuse(self, refused: Refused) -> None:
        self._answer((refused.status, [("Content-Type", "text/plain")], str(refused).encode()))

    def _answer(self, answer: Answer, *, drain: bool = False) -> None:
        """Send `answer` and close; with `drain`, read off the unsent body first (closing on
        unread bytes resets the connection, and the client may lose the answer)."""
        if self.state == _DONE or self.transport is None or self.transport.is_closing():
            return
        status, headers, data = answer
        if self.environ.get("REQUEST_METHOD") == "HEAD":
            data = b""
        self.transport.write(answer_head(status, headers, len(answer[2])) + data)
        if drain and 0 < self.left <= DRAIN_MAX and self.transport.can_write_eof():
            self.state = _DRAIN
            self.transport.write_eof()
            return
        self._close()

    def _close(self) -> None:
        self.state = _DONE
        if self.transport is not None:
            self.transport.close()

    def _expire(self) -> None:
        """Close a connection whose client has been silent for `timeout` (not while the app
        works on its request)."""
        self.timer = None
        if self.state == _DONE:
            return
        idle = self.loop.time() - self.last
        if self.state != _WORKING and idle >= self.server.timeout:
            self.abort()
            return
        wait = self.server.timeout - idle if self.state != _WORKING else self.server.timeout
        self.timer = self.loop.call_later(max(wait, 0.05), self._expire)


def _settle(loop: asyncio.AbstractEventLoop, coro: Any) -> None:
    """Run `coro` to its end on a loop that may still hold a stop request."""
    task = loop.create_task(coro)
    for _ in range(3):
        try:
            loop.run_until_complete(task)
            return
        except RuntimeError:  # "Event loop stopped before Future completed": run again
            continue
        except Exception:
            log.exception("closing the intake server")
            return
