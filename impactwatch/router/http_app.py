"""The router's HTTP surface (ASGI, Starlette): POST /alertmanager, POST /slack/interactions,
GET /metrics, GET /healthz.

Everything a request can be refused for without its body is checked before a body byte is read:
the webhook's bearer token, Slack's timestamp and signature headers (and the five-minute window),
a Content-Length (411 without one) within the route's limit (413). Refusals made before the body
close the connection. The body is then read as it streams in; one shorter than its
Content-Length (the client went away, or the server's request deadline cut it) is never
processed. 400 with the reason for a malformed payload; a state DB failure is a 503, so
Alertmanager retries; nothing is half-stored (one transaction per webhook). Decisions and scrapes
run on the thread pool (anyio's, bounded), never on the event loop.
"""

from __future__ import annotations

import hmac
import logging
import re
import time
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from slack_sdk.signature import SignatureVerifier
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from impactwatch.router.interactions import InteractionError, parse_action
from impactwatch.router.metrics import RouterCollector
from impactwatch.router.payload import PayloadError, parse_notification
from impactwatch.router.service import RouterService

log = logging.getLogger(__name__)

SLACK_WINDOW = 300  # seconds: Slack's replay window (slack_sdk's verifier uses the same)
_STAMP = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")


class Refused(Exception):
    """An answer given instead of processing the request (before or while reading the body)."""

    def __init__(self, status: int, error: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(error)
        self.status, self.error, self.headers = status, error, headers or {}

    def response(self) -> JSONResponse:
        return JSONResponse({"error": self.error}, self.status, self.headers)


def _early(status: int, error: str, **headers: str) -> Refused:
    """A refusal before the body: the unread body is not worth keeping the connection for."""
    return Refused(status, error, {**headers, "Connection": "close"})


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, at most `limit` bytes, checked against its Content-Length before the first
    byte is read and as it streams in. Raises `Refused` (or `ClientDisconnect`)."""
    declared = request.headers.get("content-length", "")
    if not declared.isdigit():
        raise _early(411, "send a Content-Length")
    length = int(declared)
    if length > limit:
        raise _early(413, f"body over {limit} bytes")
    chunks, got = [], 0
    async for chunk in request.stream():
        got += len(chunk)
        if got > length:
            raise _early(400, "body longer than its Content-Length")
        chunks.append(chunk)
    if got != length:
        raise Refused(400, "body shorter than its Content-Length")
    return b"".join(chunks)


def bearer_matches(header: str, token: str | None) -> bool:
    if not token:  # no token configured: the webhook is closed, never open
        return False
    scheme, _, value = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        value.strip().encode(), token.encode()
    )


def slack_headers_fresh(headers: Any, now: float) -> bool:
    """Slack's two headers present, well-formed, and the timestamp inside the replay window."""
    stamp = headers.get("x-slack-request-timestamp", "")
    signature = headers.get("x-slack-signature", "")
    return (
        _STAMP.fullmatch(stamp) is not None
        and _SIGNATURE.fullmatch(signature) is not None
        and abs(now - int(stamp)) <= SLACK_WINDOW
    )


class RouterEndpoints:
    def __init__(self, service: RouterService, webhook_token: str | None) -> None:
        settings = service.settings
        self.service = service
        self.stats = service.stats
        self.token = webhook_token
        self.max_body = settings.max_body_bytes
        self.interactions_max_body = settings.interactions_max_body_bytes
        secret = settings.slack_signing_secret
        self.verifier = (
            SignatureVerifier(secret.get_secret_value())
            if secret is not None and secret.get_secret_value()
            else None
        )
        self.registry = CollectorRegistry()
        self.registry.register(RouterCollector(service.stats, service.store, service.clock))

    async def webhook(self, request: Request) -> Response:
        began = time.perf_counter()
        if not bearer_matches(request.headers.get("authorization", ""), self.token):
            self.stats.count("notifications", "unauthorized")
            return _early(
                401,
                "missing or wrong bearer token",
                **{"WWW-Authenticate": 'Bearer realm="impactwatch-router"'},
            ).response()
        try:
            body = await read_body(request, self.max_body)
        except Refused as refused:
            self.stats.count("notifications", "invalid" if refused.status == 400 else "too_large")
            return refused.response()
        except ClientDisconnect:
            self.stats.count("notifications", "invalid")
            return Response(status_code=400)  # nobody is listening; never processed
        return await run_in_threadpool(self._decide, body, began)

    def _decide(self, body: bytes, began: float) -> Response:
        try:
            notification = parse_notification(body, self.service.clock())
        except PayloadError as exc:
            self.stats.count("notifications", "invalid")
            return JSONResponse({"error": str(exc)}, 400)
        try:
            result = self.service.handle(notification)
        except Exception as exc:
            self.stats.count("notifications", "failed")
            log.warning("could not store a notification: %s", type(exc).__name__)
            return JSONResponse(
                {"error": "state DB unavailable; Alertmanager will retry"},
                503,
                {"Retry-After": "5"},
            )
        self.stats.count("notifications", "accepted")
        self.stats.webhook_took(time.perf_counter() - began)
        return JSONResponse(result)

    async def interaction(self, request: Request) -> Response:
        if self.verifier is None or not slack_headers_fresh(request.headers, time.time()):
            self.stats.count("interactions", ("unknown", "unauthorized"))
            return _early(401, "bad or missing Slack signature").response()
        try:
            body = await read_body(request, self.interactions_max_body)
        except Refused as refused:
            outcome = "invalid" if refused.status == 400 else "too_large"
            self.stats.count("interactions", ("unknown", outcome))
            return refused.response()
        except ClientDisconnect:
            self.stats.count("interactions", ("unknown", "invalid"))
            return Response(status_code=400)
        if not self._signed(body, request):
            self.stats.count("interactions", ("unknown", "unauthorized"))
            return JSONResponse({"error": "bad or missing Slack signature"}, 401)
        return await run_in_threadpool(self._act, body)

    def _signed(self, body: bytes, request: Request) -> bool:
        assert self.verifier is not None
        return self.verifier.is_valid_request(body, dict(request.headers))

    def _act(self, body: bytes) -> Response:
        try:
            action = parse_action(body)
        except InteractionError as exc:
            self.stats.count("interactions", ("unknown", "invalid"))
            return JSONResponse({"error": str(exc)}, 400)
        if action is None:
            self.stats.count("interactions", ("link", "ok"))
            return JSONResponse({})
        try:
            outcome = self.service.act(action)
        except Exception as exc:
            log.warning("could not store a button press: %s", type(exc).__name__)
            self.stats.count("interactions", (action.kind, "failed"))
            return JSONResponse({"error": "state DB unavailable"}, 503)
        self.stats.count("interactions", (action.kind, outcome))
        return JSONResponse({})

    async def metrics(self, request: Request) -> Response:
        """Prometheus exposition of the router's collector (it reads the state DB: off the loop)."""
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        data = await run_in_threadpool(encoder, self.registry)
        return Response(data, headers={"Content-Type": content_type})


async def healthz(_request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def _http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": exc.detail}, exc.status_code, exc.headers)


def create_app(service: RouterService, webhook_token: str | None) -> Starlette:
    """The router's ASGI app; limits and the Slack signing secret come from `service.settings`.
    The endpoints (and the app's own CollectorRegistry) are at `app.state.endpoints`."""
    endpoints = RouterEndpoints(service, webhook_token)
    app = Starlette(
        routes=[
            Route("/alertmanager", endpoints.webhook, methods=["POST"]),
            Route("/slack/interactions", endpoints.interaction, methods=["POST"]),
            Route("/metrics", endpoints.metrics, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
        ],
        exception_handlers={HTTPException: _http_error},
    )
    app.state.endpoints = endpoints
    return app
