"""The small HTTP layer the collector and the router share: a threaded WSGI server on a daemon
thread, quiet request logs, JSON answers."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

log = logging.getLogger(__name__)

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WsgiApp = Callable[[Environ, StartResponse], Iterable[bytes]]


# An answer: status line, headers, body.
Answer = tuple[str, list[tuple[str, str]], bytes]


def json_answer(status: str, body: dict[str, Any], extra: Iterable[tuple[str, str]] = ()) -> Answer:
    data = json.dumps(body).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(data))), *extra]
    return status, headers, data


def json_response(
    start: StartResponse,
    status: str,
    body: dict[str, Any],
    extra: Iterable[tuple[str, str]] = (),
) -> list[bytes]:
    status, headers, data = json_answer(status, body, extra)
    start(status, headers)
    return [data]


class ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


class QuietHandler(WSGIRequestHandler):
    timeout = 30  # a client that promises a body and never sends it does not hold a thread

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)


def serve(app: WsgiApp, host: str, port: int, name: str) -> tuple[WSGIServer, threading.Thread]:
    """Start serving in a daemon thread; returns the server (its real port: server_port)."""
    server = make_server(host, port, app, server_class=ThreadingServer, handler_class=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name=name, daemon=True)
    thread.start()
    return server, thread
