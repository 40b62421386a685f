"""Sends the traces of finished DAG runs through the OpenTelemetry SDK (OTLP over HTTP/protobuf).

Off unless `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set (and
`OTEL_SDK_DISABLED` is not true); the exporter reads the other standard `OTEL_EXPORTER_OTLP_*`
variables (headers, timeout, certificates, compression) and the `BatchSpanProcessor` the
`OTEL_BSP_*` ones. Spans go to a bounded queue drained by the SDK's own thread, so a poll cycle
never waits on the network and a dead endpoint only drops spans; `close` is bounded in time.

Each run is traced once: runs the poller reads as finished are checked against the state DB's
"traced" marks (per execution: a cleared run is traced again), wait in a bounded backlog until
the span queue has room (a burst is spread over cycles instead of dropped), and are marked after
hand-off. Runs that ended more than `max_age` seconds ago (history read on first start, a long
outage) are not traced.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import (
    SERVICE_NAME,
    SERVICE_VERSION,
    OTELResourceDetector,
    Resource,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanProcessor
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import SpanKind, Status, StatusCode

from impactwatch.collector.tracing.spans import ENDPOINT_VARS, SpanSpec, run_trace, tracing_enabled

if TYPE_CHECKING:
    from impactwatch.catalog.airflow_merge import AssetDeclaration
    from impactwatch.catalog.model import Catalog
    from impactwatch.collector.events import DagRun, TaskTry
    from impactwatch.collector.state.store import Store

log = logging.getLogger(__name__)

PROTOCOL_VARS = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
SERVICE = "impactwatch-collector"
SCOPE = "impactwatch.collector"
CLOSE_TIMEOUT = 5.0  # seconds `close` waits for queued spans before dropping them
QUEUE_SIZE = 2048  # the SDK's default span queue (OTEL_BSP_MAX_QUEUE_SIZE)
MAX_BACKLOG = 10_000  # finished runs waiting for room in the queue; the oldest go first
RUNS_PER_CALL = 500  # runs whose tries are read in one call (bounded work per poll cycle)
_KINDS = {"server": SpanKind.SERVER, "internal": SpanKind.INTERNAL}


def _package_version() -> str:
    try:
        return version("impactwatch")
    except PackageNotFoundError:
        return "unknown"


def service_resource() -> Resource:
    """service.name `impactwatch-collector` and service.version, unless OTEL_SERVICE_NAME or
    OTEL_RESOURCE_ATTRIBUTES say otherwise."""
    defaults = {SERVICE_NAME: SERVICE, SERVICE_VERSION: _package_version()}
    return Resource.create({**defaults, **OTELResourceDetector().detect().attributes})


def traces_endpoint(environ: Mapping[str, str]) -> str:
    """The URL spans go to, resolved as the exporter does, checked: a clear error at start
    beats a failed export every few seconds."""
    name, url = ENDPOINT_VARS[0], environ.get(ENDPOINT_VARS[0], "").strip()
    given = url
    if not url:
        name, given = ENDPOINT_VARS[1], environ.get(ENDPOINT_VARS[1], "").strip()
        url = f"{given.removesuffix('/')}/v1/traces"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"{name}={redact(given)!r} is not an http(s) URL; "
            "write the OTLP/HTTP receiver's address, e.g. http://tempo:4318"
        )
    return url


def redact(url: str) -> str:
    """`url` without user:password@ and query, for logs and errors."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


class _DerivedIds(IdGenerator):
    """The SDK's id generator hook: hands out the ids `run_trace` derived for the next span."""

    def __init__(self) -> None:
        self.trace_id = 0
        self.span_id = 0

    def generate_trace_id(self) -> int:
        return self.trace_id

    def generate_span_id(self) -> int:
        return self.span_id

    def is_trace_id_random(self) -> bool:
        return False


class RunTracer:
    """Emits one trace per finished run through `processor` (a BatchSpanProcessor in service).

    `queue_size` is the processor's span queue: runs wait in the backlog while it is full.
    """

    def __init__(
        self,
        processor: SpanProcessor,
        *,
        exporter: SpanExporter | None = None,
        queue_size: int | None = None,
        max_age: float = 3600.0,
        airflow_url: str | None = None,
        resource: Resource | None = None,
    ) -> None:
        self.processor = processor
        self.exporter = exporter
        self.queue_size = queue_size
        self.max_age = max_age
        self.airflow_url = airflow_url
        self.task_assets: dict[tuple[str, str], list[str]] = {}
        self.traced = 0  # runs handed to the SDK by this process
        self.dropped = 0  # runs never traced: the backlog overflowed
        self._unchecked: dict[str, DagRun] = {}  # not yet checked against the traced marks
        self._backlog: dict[str, DagRun] = {}  # untraced, waiting for room in the queue
        self._ids = _DerivedIds()
        self._lock = threading.Lock()
        self.provider = TracerProvider(
            resource=resource or service_resource(),
            id_generator=self._ids,
            shutdown_on_exit=False,
        )
        self.provider.add_span_processor(processor)
        self.tracer = self.provider.get_tracer(SCOPE, _package_version())

    @classmethod
    def from_env(
        cls, *, max_age: float = 3600.0, airflow_url: str | None = None
    ) -> RunTracer | None:
        """A tracer exporting over OTLP/HTTP when the environment asks for one, else None."""
        env = os.environ
        if not tracing_enabled(env):
            return None
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        protocol = next((env[v] for v in PROTOCOL_VARS if env.get(v, "").strip()), "")
        if protocol and protocol.strip() != "http/protobuf":
            log.warning(
                "traces: OTLP protocol %r is not supported, sending http/protobuf "
                "(point the endpoint at the collector's HTTP port, usually 4318)",
                protocol.strip(),
            )
        endpoint = traces_endpoint(env)
        queue_size = _positive_int(env, "OTEL_BSP_MAX_QUEUE_SIZE", QUEUE_SIZE)
        exporter: SpanExporter = OTLPSpanExporter(endpoint=endpoint)
        tracer = cls(
            BatchSpanProcessor(exporter, max_queue_size=queue_size),
            exporter=exporter,
            queue_size=queue_size,
            max_age=max_age,
            airflow_url=airflow_url,
        )
        log.info("traces: one per finished DAG run, sent to %s", redact(endpoint))
        return tracer

    # --- inputs -----------------------------------------------------------------------------
    def set_assets(self, assets: Iterable[AssetDeclaration]) -> None:
        """Which tasks write which Assets (for data products produced by an Asset)."""
        task_assets: dict[tuple[str, str], list[str]] = {}
        for asset in assets:
            for producer in asset.producers:
                task_assets.setdefault(producer, []).append(asset.uri)
        self.task_assets = task_assets

    def due(self, runs: Iterable[DagRun], now: float) -> list[DagRun]:
        """Finished runs recent enough to trace, once each."""
        since = now - self.max_age
        due = {r.key: r for r in runs if r.terminal and r.end is not None and r.end >= since}
        return list(due.values())

    @property
    def backlog(self) -> int:
        return len(self._backlog) + len(self._unchecked)

    # --- output -----------------------------------------------------------------------------
    def trace_finished(
        self, runs: Iterable[DagRun], store: Store, catalog: Catalog, now: float
    ) -> int:
        """Trace the finished runs among `runs` (and the backlog) not traced before, as far as
        the span queue has room; returns how many were sent. After an error (state DB) nothing
        is lost: the next call retries."""
        for run in self.due(runs, now):
            self._unchecked[run.key] = run
        if self._unchecked:
            fresh = store.untraced_runs(list(self._unchecked.values()))
            self._unchecked = {}
            for run in fresh:
                self._backlog[run.key] = run
        self._trim_backlog(now)
        if not self._backlog:
            return 0
        batch = list(self._backlog.values())[:RUNS_PER_CALL]
        tries = store.run_tries([r.key for r in batch])
        room = self._room()
        sent: list[DagRun] = []
        for run in batch:
            specs = self.specs(run, tries.get(run.key, []), catalog)
            if room is not None and len(specs) > room and (sent or room < (self.queue_size or 0)):
                break  # the queue is full: the rest waits for a later cycle
            self.emit(specs)
            sent.append(run)
            if room is not None:
                room -= len(specs)
        if sent:
            store.mark_traced(sent, now)
            for run in sent:
                del self._backlog[run.key]
        return len(sent)

    def _trim_backlog(self, now: float) -> None:
        since = now - self.max_age
        kept = {k: r for k, r in self._backlog.items() if (r.end or 0.0) >= since}
        if len(kept) > MAX_BACKLOG:
            newest = sorted(kept.values(), key=lambda r: r.end or 0.0)[-MAX_BACKLOG:]
            kept = {r.key: r for r in newest}
        lost = len(self._backlog) - len(kept)
        if lost:
            if not self.dropped:
                log.warning("traces: %d finished run(s) not traced (too old or too many)", lost)
            self.dropped += lost
        self._backlog = kept

    def _room(self) -> int | None:
        """Free places in the BatchSpanProcessor's queue; None when no limit is known.

        The SDK has no public accessor for its queue length (only an opt-in internal metric);
        if its internals change, this assumes an empty queue and the SDK drops what overflows.
        """
        if self.queue_size is None:
            return None
        queue = getattr(getattr(self.processor, "_batch_processor", None), "_queue", None)
        try:
            queued = len(queue) if queue is not None else 0
        except TypeError:
            queued = 0
        return max(self.queue_size - queued, 0)

    def specs(self, run: DagRun, tries: Iterable[TaskTry], catalog: Catalog) -> list[SpanSpec]:
        return run_trace(
            run, tries, catalog, task_assets=self.task_assets, airflow_url=self.airflow_url
        )

    def emit(self, specs: list[SpanSpec]) -> None:
        """Start every span with its derived ids and real times, then end children, then root."""
        with self._lock:
            started: dict[int, trace.Span] = {}
            for spec in specs:
                parent = started.get(spec.parent_id) if spec.parent_id is not None else None
                context = trace.set_span_in_context(parent) if parent is not None else Context()
                self._ids.trace_id, self._ids.span_id = spec.trace_id, spec.span_id
                span = self.tracer.start_span(
                    spec.name,
                    context=context,
                    kind=_KINDS[spec.kind],
                    attributes=dict(spec.attributes),
                    start_time=spec.start_ns,
                )
                if spec.error is not None:
                    span.set_status(Status(StatusCode.ERROR, spec.error))
                started[spec.span_id] = span
            for spec in reversed(specs):
                started[spec.span_id].end(end_time=spec.end_ns)
            self.traced += 1

    def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Send what is queued, waiting at most `timeout` s (a dead endpoint must not hang)."""
        if self.backlog:
            log.info("traces: %d finished run(s) still waiting were not sent", self.backlog)
        worker = threading.Thread(
            target=self.provider.shutdown, name="impactwatch-trace-close", daemon=True
        )
        worker.start()
        worker.join(timeout)
        if worker.is_alive():
            log.warning("traces: endpoint did not take the last spans within %.0fs", timeout)
            if self.exporter is not None:
                self.exporter.shutdown()  # stops the SDK's retries; the rest is dropped


def _positive_int(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) == 0:
        raise ValueError(f"{name}={raw!r} is not a positive whole number (default {default})")
    return int(raw)
