"""The collector's HTTP surface (WSGI): GET /metrics, GET /healthz, POST /v1/events.

The intake is closed unless the collector has a token (`IMPACTWATCH_TOKEN` or
`IMPACTWATCH_TOKEN_FILE`): writing to the state DB is never open to anyone on the network.
Bad input gets a 4xx with a JSON reason, never a trace: 401 wrong or missing token, 400
malformed events, 411 no length, 413 body over the limit; each refused batch counts in
`impactwatch_collector_events_total{source="listener",outcome="rejected"}` (its events are
lost). A state DB failure is a 503 with Retry-After, so the listener keeps the batch and tries
later. A 202 is sent once the events are committed.
"""

from __future__ import annotations

import hmac
import logging
import threading
from collections.abc import Iterable

from prometheus_client import CONTENT_TYPE_LATEST

from impactwatch.collector.events import Batch
from impactwatch.collector.intake.parse import IntakeError, parse_events
from impactwatch.collector.intake.server import CollectorServer
from impactwatch.collector.service import CollectorService, describe_error
from impactwatch.collector.state.merge import Changes
from impactwatch.wsgi import Answer, Environ, StartResponse, json_answer, json_response

log = logging.getLogger(__name__)


class CollectorApp:
    def __init__(self, service: CollectorService, token: str | None, max_body: int) -> None:
        self.service = service
        self.token = token
        self.max_body = max_body
        self.exposition = service.exposition

    def __call__(self, environ: Environ, start: StartResponse) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "GET")
        if path == "/metrics":
            return self._metrics(environ, start)
        if path == "/healthz":
            return self._health(start)
        if path == "/v1/events":
            if method != "POST":
                return json_response(
                    start, "405 Method Not Allowed", {"error": "use POST"}, [("Allow", "POST")]
                )
            return self._events(environ, start)
        return json_response(start, "404 Not Found", {"error": f"no such path {path!r}"})

    def _metrics(self, environ: Environ, start: StartResponse) -> list[bytes]:
        """The cached exposition (see exposition.py), gzipped when the scraper asks for it."""
        headers = [("Content-Type", CONTENT_TYPE_LATEST)]
        if "gzip" in environ.get("HTTP_ACCEPT_ENCODING", ""):
            data = self.exposition.render_gzip()
            headers.append(("Content-Encoding", "gzip"))
        else:
            data = self.exposition.render()
        start("200 OK", [*headers, ("Content-Length", str(len(data)))])
        return [data]

    def _health(self, start: StartResponse) -> list[bytes]:
        stats = self.service.state.self_stats
        body = {"status": "ok", "stale": stats.stale, "last_successful_poll": stats.last_poll}
        return json_response(start, "200 OK", body)

    def _authorized(self, environ: Environ) -> bool:
        if not self.token:
            return False
        given = environ.get("HTTP_AUTHORIZATION", "")
        scheme, _, value = given.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            value.strip().encode(), self.token.encode()
        )

    def _refused(self) -> None:
        """Count a refused batch (from the event loop too: without waiting for the lock)."""
        self.service.state.count_soon("listener", "rejected")

    # The intake in three steps, so an event loop can run it without blocking (intake_server.py)
    def refusal(self, environ: Environ) -> Answer | None:
        """401, 411 or 413 (counted as rejected) before the body is read, or None."""
        if not self._authorized(environ):
            self._refused()
            reason = (
                "missing or wrong bearer token"
                if self.token
                else "intake closed: the collector has no IMPACTWATCH_TOKEN (or _FILE); "
                "give it and the listener the same token"
            )
            return json_answer(
                "401 Unauthorized",
                {"error": reason},
                [("WWW-Authenticate", 'Bearer realm="impactwatch"')],
            )
        try:
            length = int(environ.get("CONTENT_LENGTH") or -1)
        except ValueError:
            length = -1
        if length < 0:
            self._refused()
            return json_answer("411 Length Required", {"error": "send a Content-Length"})
        if length > self.max_body:
            self._refused()
            return json_answer(
                "413 Content Too Large",
                {"error": f"body over {self.max_body} bytes; send smaller batches"},
            )
        return None

    def take(self, body: bytes) -> Batch | Answer:
        """The batch in a body, or a 400 (counted as rejected)."""
        try:
            return parse_events(body)
        except IntakeError as exc:
            self._refused()
            return json_answer("400 Bad Request", {"error": str(exc)})

    async def store(self, batches: list[Batch]) -> list[Answer]:
        """Store batches from the intake's event loop, as groups; their answers (202 or 503).
        A failed write is logged once for all the requests it fails."""
        results = await self.service.ingest_events_in_loop(batches)
        answers: list[Answer] = []
        failed, lost, first = 0, 0, None
        for batch, got in zip(batches, results, strict=True):
            if isinstance(got, BaseException):
                failed, lost, first = failed + 1, lost + len(batch), first or got
                answers.append(self.failed())
            else:
                answers.append(self.accepted(batch, got))
        if first is not None:
            reason = describe_error(first)
            log.warning("could not store %d request(s), %d event(s): %s", failed, lost, reason)
        return answers

    @staticmethod
    def accepted(batch: Batch, changes: Changes) -> Answer:
        return json_answer("202 Accepted", {"accepted": len(batch), "outcomes": changes.outcomes})

    @staticmethod
    def failed() -> Answer:
        """The answer to a batch whose write failed: the listener keeps it and tries later."""
        return json_answer(
            "503 Service Unavailable", {"error": "state DB unavailable"}, [("Retry-After", "5")]
        )

    def _events(self, environ: Environ, start: StartResponse) -> list[bytes]:
        """The intake on a WSGI server: the same steps, waiting for the store."""
        answer = self.refusal(environ)
        if answer is None:
            taken = self.take(environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"])))
            if isinstance(taken, Batch):
                try:
                    answer = self.accepted(taken, self.service.ingest_events(taken))
                except Exception as exc:
                    log.warning("could not store %d event(s): %s", len(taken), describe_error(exc))
                    answer = self.failed()
            else:
                answer = taken
        status, headers, data = answer
        start(status, headers)
        return [data]


def serve(app: CollectorApp, host: str, port: int) -> tuple[CollectorServer, threading.Thread]:
    """Serve `app` on its event-loop server (intake_server.py) in a daemon thread; returns
    the server (its real port: server_port)."""
    server = CollectorServer(app, host, port)
    thread = threading.Thread(target=server.serve_forever, name=server.thread_name, daemon=True)
    thread.start()
    return server, thread
