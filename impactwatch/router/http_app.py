"""The router's HTTP surface (WSGI): POST /alertmanager, POST /slack/interactions, GET /metrics,
GET /healthz.

401 without the webhook's bearer token or a valid Slack signature (slack_sdk's verifier, with
its five-minute timestamp window); 400 with the reason for malformed JSON or a payload that is not
version 4; 411 without a length; 413 over the size limit. A state DB failure is a 503, so
Alertmanager retries; nothing is half-stored (one transaction per webhook).
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, make_wsgi_app

from impactwatch import http_server
from impactwatch.http_server import WSGIServer
from impactwatch.router.interactions import InteractionError, parse_action
from impactwatch.router.metrics import RouterCollector
from impactwatch.router.payload import PayloadError, parse_notification
from impactwatch.router.service import RouterService
from impactwatch.wsgi import Environ, StartResponse, json_response

log = logging.getLogger(__name__)


class RouterApp:
    def __init__(
        self,
        service: RouterService,
        webhook_token: str | None,
        signing_secret: str | None,
        max_body: int,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.service = service
        self.token = webhook_token
        self.max_body = max_body
        self.verifier = None
        if signing_secret:
            from slack_sdk.signature import SignatureVerifier

            self.verifier = SignatureVerifier(signing_secret)
        self.registry = registry or CollectorRegistry()
        self.registry.register(RouterCollector(service.stats, service.store, service.clock))
        self.metrics = make_wsgi_app(self.registry)

    def __call__(self, environ: Environ, start: StartResponse) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "GET")
        if path == "/metrics":
            return self.metrics(environ, start)
        if path == "/healthz":
            return json_response(start, "200 OK", {"status": "ok"})
        if path in ("/alertmanager", "/slack/interactions"):
            if method != "POST":
                return json_response(
                    start, "405 Method Not Allowed", {"error": "use POST"}, [("Allow", "POST")]
                )
            if path == "/alertmanager":
                return self._webhook(environ, start)
            return self._interaction(environ, start)
        return json_response(start, "404 Not Found", {"error": f"no such path {path!r}"})

    def _body(self, environ: Environ, start: StartResponse) -> bytes | list[bytes]:
        try:
            length = int(environ.get("CONTENT_LENGTH") or -1)
        except ValueError:
            length = -1
        if length < 0:
            return json_response(start, "411 Length Required", {"error": "send a Content-Length"})
        if length > self.max_body:
            return json_response(
                start, "413 Content Too Large", {"error": f"body over {self.max_body} bytes"}
            )
        return environ["wsgi.input"].read(length)

    def _authorized(self, environ: Environ) -> bool:
        if not self.token:  # no token configured: the webhook is closed, never open
            return False
        scheme, _, value = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            value.strip().encode(), self.token.encode()
        )

    def _webhook(self, environ: Environ, start: StartResponse) -> list[bytes]:
        began = time.perf_counter()
        stats = self.service.stats
        if not self._authorized(environ):
            stats.count("notifications", "unauthorized")
            return json_response(
                start,
                "401 Unauthorized",
                {"error": "missing or wrong bearer token"},
                [("WWW-Authenticate", 'Bearer realm="impactwatch-router"')],
            )
        body = self._body(environ, start)
        if isinstance(body, list):
            stats.count("notifications", "too_large")
            return body
        try:
            notification = parse_notification(body, self.service.clock())
        except PayloadError as exc:
            stats.count("notifications", "invalid")
            return json_response(start, "400 Bad Request", {"error": str(exc)})
        try:
            result = self.service.handle(notification)
        except Exception as exc:
            stats.count("notifications", "failed")
            log.warning("could not store a notification: %s", type(exc).__name__)
            return json_response(
                start,
                "503 Service Unavailable",
                {"error": "state DB unavailable; Alertmanager will retry"},
                [("Retry-After", "5")],
            )
        stats.count("notifications", "accepted")
        stats.webhook_took(time.perf_counter() - began)
        return json_response(start, "200 OK", result)

    def _interaction(self, environ: Environ, start: StartResponse) -> list[bytes]:
        stats = self.service.stats
        body = self._body(environ, start)
        if isinstance(body, list):
            return body
        headers = {
            "x-slack-request-timestamp": environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP", ""),
            "x-slack-signature": environ.get("HTTP_X_SLACK_SIGNATURE", ""),
        }
        if self.verifier is None or not self._signed(body, headers):
            stats.count("interactions", ("unknown", "unauthorized"))
            return json_response(
                start, "401 Unauthorized", {"error": "bad or missing Slack signature"}
            )
        try:
            action = parse_action(body)
        except InteractionError as exc:
            stats.count("interactions", ("unknown", "invalid"))
            return json_response(start, "400 Bad Request", {"error": str(exc)})
        if action is None:
            stats.count("interactions", ("link", "ok"))
            return json_response(start, "200 OK", {})
        try:
            outcome = self.service.act(action)
        except Exception as exc:
            log.warning("could not store a button press: %s", type(exc).__name__)
            stats.count("interactions", (action.kind, "failed"))
            return json_response(
                start, "503 Service Unavailable", {"error": "state DB unavailable"}
            )
        stats.count("interactions", (action.kind, outcome))
        return json_response(start, "200 OK", {})

    def _signed(self, body: bytes, headers: dict[str, str]) -> bool:
        assert self.verifier is not None
        try:
            return self.verifier.is_valid_request(body, headers)
        except (ValueError, TypeError):  # a timestamp that is not a number
            return False


def serve(app: RouterApp, host: str, port: int) -> tuple[WSGIServer, threading.Thread]:
    """Start serving in a daemon thread; returns the server (its real port: server_port).

    The collector's small server: handler threads reused, headers parsed without the `email`
    package, the answer in one write. A burst of webhooks spent a third of the router's CPU in
    `wsgiref` and a thread per connection."""
    return http_server.serve(app, host, port, "iw-router-http")
