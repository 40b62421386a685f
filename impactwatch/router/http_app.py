"""The router's HTTP surface (Starlette): POST /alertmanager, POST /slack/interactions, GET
/metrics, GET /healthz. What can be refused from the request head (bearer token, Slack's headers
and five-minute window, Content-Length and the route's limit) is refused before a body byte is
read; Slack bodies, which can only be authenticated once read, share one byte budget
(`interactions_inflight_bytes`: beyond it, 503); a body ending short of its Content-Length is
never processed. Decisions and scrapes run on
anyio's bounded thread pool. A state DB failure is a 503, so Alertmanager retries; nothing is
half-stored (one transaction per webhook).
"""

from __future__ import annotations

import functools
import hmac
import logging
import re
import time
from typing import Any

import anyio
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from slack_sdk.signature import SignatureVerifier
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from impactwatch.router.interactions import InteractionError, parse_action
from impactwatch.router.metrics import RouterCollector
from impactwatch.router.payload import PayloadError, parse_notification
from impactwatch.router.service import RouterService

log = logging.getLogger(__name__)
RUNBOOKS_PATH = "/runbooks"  # alert_rules/settings.py's default runbook_base_url ends with it

SLACK_WINDOW = 300  # seconds: Slack's replay window (slack_sdk's verifier uses the same)
_STAMP = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")
THREADS = 4  # decisions serialize on the store's locks: more threads would only queue there


def refuse(status: int, error: str, **headers: str) -> JSONResponse:
    """A refusal from the request head: the unread body is not worth keeping the connection for."""
    return JSONResponse({"error": error}, status, {**headers, "Connection": "close"})


def declared_length(request: Request, limit: int) -> int | JSONResponse:
    """The body's Content-Length, or the refusal (before a body byte is read): 411 without
    one, 413 when it is over `limit`."""
    declared = request.headers.get("content-length", "")
    if not declared.isdigit():
        return refuse(411, "send a Content-Length")
    if int(declared) > limit:
        return refuse(413, f"body over {limit} bytes")
    return int(declared)


async def read_declared(request: Request, declared: int) -> bytes | JSONResponse:
    """The whole body, or 400 when it ends short of `declared` (`ClientDisconnect` when the
    client went away)."""
    body = b"".join([chunk async for chunk in request.stream()])
    if len(body) != declared:
        return refuse(400, "body shorter than its Content-Length")
    return body


async def read_body(request: Request, limit: int) -> bytes | JSONResponse:
    """The whole body, or the refusal (`declared_length`, `read_declared`)."""
    declared = declared_length(request, limit)
    if isinstance(declared, Response):
        return declared
    return await read_declared(request, declared)


class BodyBudget:
    """Bytes of bodies being received before they can be authenticated (a Slack signature
    covers the body), across all requests: an unsigned sender cannot hold more than this in
    memory, however many connections it opens. Event-loop only: no lock."""

    def __init__(self, limit: int) -> None:
        self.left = limit

    def take(self, size: int) -> bool:
        if size > self.left:
            return False
        self.left -= size
        return True

    def give(self, size: int) -> None:
        self.left += size


def refusal_outcome(refused: Response) -> str:
    """How a body refused by `read_body` is counted: too large (413), else invalid (400, 411)."""
    return "too_large" if refused.status_code == 413 else "invalid"


def bearer_matches(header: str, token: str | None) -> bool:
    if not token:  # no token configured: the webhook is closed, never open
        return False
    scheme, _, value = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        value.strip().encode(), token.encode()
    )


def slack_headers_fresh(headers: Any, now: float) -> bool:
    """Slack's two headers present, well-formed, and the timestamp inside the replay window."""
    stamp, signature = (headers.get(f"x-slack-{h}", "") for h in ("request-timestamp", "signature"))
    if not _STAMP.fullmatch(stamp) or not _SIGNATURE.fullmatch(signature):
        return False
    return abs(now - int(stamp)) <= SLACK_WINDOW


class RouterEndpoints:
    def __init__(self, service: RouterService, webhook_token: str | None) -> None:
        settings = service.settings
        self.service = service
        self.stats = service.stats
        self.token = webhook_token
        self.max_body = settings.max_body_bytes
        self.interactions_max_body = settings.interactions_max_body_bytes
        self.unsigned = BodyBudget(settings.interactions_inflight_bytes)
        secret = settings.slack_signing_secret
        secret_value = secret.get_secret_value() if secret is not None else ""
        self.verifier = SignatureVerifier(secret_value) if secret_value else None
        self.threads = anyio.CapacityLimiter(THREADS)
        self.registry = CollectorRegistry()
        self.registry.register(RouterCollector(service.stats, service.store, service.clock))

    async def off_loop(self, func: Any, *args: Any) -> Any:
        """`func(*args)` on one of the app's `THREADS` decision threads, off the event loop."""
        return await anyio.to_thread.run_sync(functools.partial(func, *args), limiter=self.threads)

    async def webhook(self, request: Request) -> Response:
        began = time.perf_counter()
        if not bearer_matches(request.headers.get("authorization", ""), self.token):
            self.stats.count("notifications", "unauthorized")
            realm = {"WWW-Authenticate": 'Bearer realm="impactwatch-router"'}
            return refuse(401, "missing or wrong bearer token", **realm)
        try:
            body = await read_body(request, self.max_body)
        except ClientDisconnect:
            body = refuse(400, "the client left before its body ended")  # nobody hears it
        if isinstance(body, Response):
            self.stats.count("notifications", refusal_outcome(body))
            return body
        return await self.off_loop(self._decide, body, began)

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
            reason = self.stats.store_failed("notification", exc)
            log.warning("could not store a notification (%s): %s", reason, type(exc).__name__)
            return JSONResponse(
                {"error": "state DB unavailable; Alertmanager will retry"},
                503,
                {"Retry-After": "5"},
            )
        self.stats.count("notifications", "accepted")
        self.stats.add("values_adjusted", notification.adjusted)
        self.stats.webhook_took(time.perf_counter() - began)
        return JSONResponse(result)

    async def interaction(self, request: Request) -> Response:
        if self.verifier is None or not slack_headers_fresh(request.headers, time.time()):
            self.stats.count("interactions", ("unknown", "unauthorized"))
            return refuse(401, "bad or missing Slack signature")
        declared = declared_length(request, self.interactions_max_body)
        if isinstance(declared, Response):
            self.stats.count("interactions", ("unknown", refusal_outcome(declared)))
            return declared
        if not self.unsigned.take(declared):
            self.stats.count("interactions", ("unknown", "busy"))
            return refuse(
                503, "too many Slack requests being received; retry", **{"Retry-After": "1"}
            )
        try:
            body = await read_declared(request, declared)
        except ClientDisconnect:
            body = refuse(400, "the client left before its body ended")
        finally:
            self.unsigned.give(declared)
        if isinstance(body, Response):
            self.stats.count("interactions", ("unknown", refusal_outcome(body)))
            return body
        if not self.verifier.is_valid_request(body, dict(request.headers)):
            self.stats.count("interactions", ("unknown", "unauthorized"))
            return JSONResponse({"error": "bad or missing Slack signature"}, 401)
        return await self.off_loop(self._act, body)

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
            reason = self.stats.store_failed("interaction", exc)
            log.warning("could not store a button press (%s): %s", reason, type(exc).__name__)
            self.stats.count("interactions", (action.kind, "failed"))
            return JSONResponse({"error": "state DB unavailable"}, 503)
        self.stats.count("interactions", (action.kind, outcome))
        return JSONResponse({})

    async def metrics(self, request: Request) -> Response:
        """The router's collector reads the state DB: off the loop, not queued behind decisions."""
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        data = await run_in_threadpool(encoder, self.registry)
        return Response(data, headers={"Content-Type": content_type})


async def healthz(_request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def _http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": exc.detail}, exc.status_code, exc.headers)


class Runbooks(StaticFiles):
    """The runbooks `impactwatch rules` wrote (`--out DIR`: DIR/runbooks), so every alert's
    runbook link opens where the router runs. Markdown is sent as text/plain, which every
    browser shows instead of downloading it."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers["content-type"] = "text/plain; charset=utf-8"
        return response


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
            *(
                [Mount(RUNBOOKS_PATH, Runbooks(directory=service.settings.runbooks_dir))]
                if service.settings.runbooks_dir
                else []
            ),
        ],
        exception_handlers={HTTPException: _http_error},
    )
    app.state.endpoints = endpoints
    return app
