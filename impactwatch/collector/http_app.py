"""The collector's HTTP surface (ASGI, Starlette): GET /metrics, GET /healthz, POST /v1/events,
GET /v1/failures?dag_id= (a pipeline's latest failure, for the router's messages).

The server answers within moments of launch, while the writer restores the state from the
state DB: until then `/healthz` and `/metrics` answer 503 `{"status": "starting"}` (a
Kubernetes readiness probe keeps the pod out of the Service; Prometheus records `up 0`, not
counters at zero), and intake requests wait in the writer's queue.

The intake is closed unless the collector has a token (`IMPACTWATCH_TOKEN` or
`IMPACTWATCH_TOKEN_FILE`): writing to the state DB is never open to anyone on the network.
Bad input gets a 4xx with a JSON reason, never a trace: 401 wrong or missing token and 411 no
length, both before a byte of the body is read, 413 a body over the limit (announced, or sent),
400 malformed events or a value out of bounds (the message names the event and field, see
intake/bounds.py), and 400 too for a batch the state DB refuses row by row (retrying it could
never succeed). A full writer queue, a state DB failure or a write not done within
`write_timeout` is a 503 with Retry-After: the listener keeps that batch and tries later. A 202
is sent once the events are committed and observed.

Each refused or failed request counts once in
`impactwatch_collector_events_total{source="listener",outcome=<reason>}`, the reason one of
`contract.metrics.INTAKE_REFUSALS`; a failed write counts in
`impactwatch_collector_db_errors_total{db="state"}` as well (by the writer).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re

from prometheus_client import CONTENT_TYPE_LATEST as METRICS_TYPE
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from impactwatch.collector.intake.parse import IntakeError, parse_events
from impactwatch.collector.service import BatchRefused, CollectorService, QueueFull

log = logging.getLogger(__name__)

DAG_ID = re.compile(r"[\w.-]{1,250}")  # Airflow's rule for ids (intake/bounds.py)
PARSE_INLINE = 64 * 1024  # larger bodies are parsed on a worker thread, off the event loop
RETRY_AFTER = {"Retry-After": "5"}


def collector_app(
    service: CollectorService, token: str | None, max_body: int, write_timeout: float = 30.0
) -> Starlette:
    """The ASGI app serving `service`; `/v1/events` needs `token` (closed without one)."""
    stats = service.state.self_stats

    def refused(
        reason: str, status: int, error: str, headers: dict[str, str] | None = None
    ) -> Response:
        stats.count("listener", reason)
        return JSONResponse({"error": error}, status, headers)

    def authorized(request: Request) -> bool:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        return (
            bool(token)
            and scheme.lower() == "bearer"
            and hmac.compare_digest(value.strip().encode(), str(token).encode())
        )

    async def events(request: Request) -> Response:
        if not authorized(request):
            reason = (
                "missing or wrong bearer token"
                if token
                else "intake closed: the collector has no IMPACTWATCH_TOKEN (or _FILE); "
                "give it and the listener the same token"
            )
            return refused(
                "unauthorized", 401, reason, {"WWW-Authenticate": 'Bearer realm="impactwatch"'}
            )
        length = request.headers.get("content-length", "")
        if not length.isdigit():
            return refused("invalid", 411, "send a Content-Length")
        if int(length) > max_body:
            return refused("too_large", 413, f"body over {max_body} bytes; send smaller batches")
        body = bytearray()
        try:
            async for chunk in request.stream():
                body += chunk
                if len(body) > max_body:
                    return refused(
                        "too_large", 413, f"body over {max_body} bytes; send smaller batches"
                    )
        except ClientDisconnect:  # gone, or cut by the server's deadline: nothing to answer
            stats.count("listener", "disconnected")
            return Response(status_code=400)
        try:
            if len(body) > PARSE_INLINE:
                batch = await run_in_threadpool(parse_events, bytes(body))
            else:
                batch = parse_events(bytes(body))
        except IntakeError as exc:
            return refused("invalid", 400, str(exc))
        try:
            changes = await asyncio.wait_for(
                asyncio.wrap_future(service.submit(batch)), write_timeout
            )
        except QueueFull:
            return refused("queue_full", 503, "the collector is busy; try again later", RETRY_AFTER)
        except BatchRefused as exc:  # the writer logged it; the same batch would fail again
            return refused("store_refused", 400, str(exc))
        except Exception as exc:  # the writer counts and logs a failed write
            if isinstance(exc, TimeoutError):
                log.warning("state DB: %d event(s) not stored in %.0f s", len(batch), write_timeout)
            return refused("store_error", 503, "state DB unavailable", RETRY_AFTER)
        return JSONResponse({"accepted": len(batch), "outcomes": changes.outcomes}, 202)

    def starting() -> Response:
        return JSONResponse({"status": "starting"}, 503, RETRY_AFTER)

    async def metrics(request: Request) -> Response:
        """The cached exposition (see exposition.py), gzipped when the scraper asks for it;
        rendered on a worker thread, so a large scrape never holds the event loop. A 503 until
        the state is restored: a scrape of zeros would read as counter resets."""
        if not service.ready.is_set():
            return starting()
        exposition = service.exposition
        if "gzip" in request.headers.get("accept-encoding", ""):
            data = await run_in_threadpool(exposition.render_gzip)
            return Response(data, headers={"Content-Encoding": "gzip"}, media_type=METRICS_TYPE)
        return Response(await run_in_threadpool(exposition.render), media_type=METRICS_TYPE)

    async def health(request: Request) -> Response:
        """503 "starting" until the state is restored; 503 "stale" while a failed or late poll
        cycle leaves the last state served (the reason says why); 200 "ok" otherwise, before the
        first poll included. `learning`: the learned baselines are still reading history."""
        if not service.ready.is_set():
            return starting()
        body = {
            "status": "ok",
            "stale": stats.stale,
            "last_successful_poll": stats.last_poll,
            "learning": not service.learned.is_set(),
        }
        reason = stats.stale_reason
        if reason is not None:
            return JSONResponse({**body, "status": "stale", "reason": reason}, 503)
        return JSONResponse(body)

    async def failures(request: Request) -> Response:
        """The latest failure of `?dag_id=` (collector/failures.py): read-only, like /metrics
        it names DAGs, tasks and exception classes, never messages or secrets. 400 without a
        well-formed dag_id, 404 when no failed run of it is stored, 503 while starting or
        when the state DB cannot be read."""
        if not service.ready.is_set():
            return starting()
        dag_id = request.query_params.get("dag_id", "")
        if not DAG_ID.fullmatch(dag_id):
            return JSONResponse(
                {"error": "dag_id: give one DAG id (letters, digits, '_', '.', '-'; 1-250)"}, 400
            )
        try:
            report = await run_in_threadpool(service.store.latest_failure, dag_id)
        except Exception as exc:
            log.warning("failures of %s: %s", dag_id, type(exc).__name__)
            return JSONResponse({"error": "state DB unavailable"}, 503, RETRY_AFTER)
        if report is None:
            return JSONResponse({"error": f"no failed run of {dag_id} is known"}, 404)
        return JSONResponse(report.to_json())

    return Starlette(
        routes=[
            Route("/metrics", metrics, methods=["GET"]),
            Route("/healthz", health, methods=["GET"]),
            Route("/v1/events", events, methods=["POST"]),
            Route("/v1/failures", failures, methods=["GET"]),
        ]
    )
