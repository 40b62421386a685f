"""Traces of finished DAG runs, as plain data: one trace per run, one span per task try. Pure.

`run_trace` turns a finished run, its task tries and the catalog into `SpanSpec`s: real start
and end times (to the microsecond, as Airflow stores them), ids derived from the run's and the
try's keys (a restart or a second collector emits the same ids, so a duplicate is recognisable),
and attribute names from the OpenTelemetry CI/CD semantic conventions (`cicd.*`, `error.type`)
where they exist and `impactwatch.*` for the rest. `trace_export` hands the specs to the SDK.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal
from urllib.parse import quote

from impactwatch.catalog.model import Catalog
from impactwatch.collector.cost.pricing import run_cost, try_cost
from impactwatch.collector.events import SEP, DagRun, TaskTry

AttributeValue = str | bool | int | float | tuple[str, ...]

# Airflow state -> `cicd.pipeline.task.run.result` (well-known values of the semconv).
TASK_RESULT = {
    "success": "success",
    "failed": "failure",
    "skipped": "skip",
    "upstream_failed": "skip",  # never ran: an upstream failed (that span carries the error)
    "removed": "skip",  # no longer in the DAG
}
CUT_SHORT = "cancellation"  # a try still unfinished when its run ended
RUN_RESULT = {"success": "success", "failed": "failure"}
ACTION = "RUN"  # `cicd.pipeline.action.name`
ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")


@dataclass(frozen=True, slots=True)
class SpanSpec:
    """One span, ready for the SDK. `parent_id` None: the run's (root) span."""

    name: str
    trace_id: int
    span_id: int
    parent_id: int | None
    kind: Literal["server", "internal"]
    start_ns: int
    end_ns: int
    attributes: Mapping[str, AttributeValue]
    error: str | None = None  # span status ERROR with this description; None: UNSET


def tracing_enabled(environ: Mapping[str, str]) -> bool:
    """Traces are on when an OTLP endpoint is set and the OpenTelemetry SDK is not disabled."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return any(environ.get(name, "").strip() for name in ENDPOINT_VARS)


def derived_id(bits: int, *parts: str) -> int:
    """A stable, never-zero id of `bits` bits from `parts` (SHA-256)."""
    digest = hashlib.sha256(SEP.join(("impactwatch", *parts)).encode()).digest()
    return int.from_bytes(digest[: bits // 8], "big") or 1


def trace_id_of(run: DagRun) -> int:
    """One trace per execution of a run: a cleared and re-run run gets a new trace."""
    return derived_id(128, "trace", run.dag_id, run.run_id, str(run.clear_number))


def run_span_id(run: DagRun) -> int:
    return derived_id(64, "run", run.dag_id, run.run_id, str(run.clear_number))


def try_span_id(t: TaskTry) -> int:
    return derived_id(64, "try", t.key)


def to_ns(ts: float) -> int:
    """Unix seconds to nanoseconds, exact to the microsecond (Airflow's precision)."""
    return round(ts * 1_000_000) * 1_000


def tries_of_execution(run: DagRun, tries: Iterable[TaskTry]) -> list[TaskTry]:
    """The tries of this execution of the run: after a clear (`clear_number` > 0, `queued_at`
    reset by Airflow) the earlier execution's tries, ended before it, belong to its own trace."""
    out = list(tries)
    if run.clear_number and run.queued_at is not None:
        since = run.queued_at
        out = [t for t in out if (t.end if t.end is not None else (t.start or since)) >= since]
    return out


@dataclass(frozen=True, slots=True)
class _Run:
    """What every span of one run's trace shares."""

    run: DagRun
    catalog: Catalog
    task_assets: Mapping[tuple[str, str], Sequence[str]]
    trace_id: int
    root_id: int
    end_ns: int
    common: Mapping[str, AttributeValue]
    url: str | None


def run_trace(
    run: DagRun,
    tries: Iterable[TaskTry],
    catalog: Catalog,
    *,
    task_assets: Mapping[tuple[str, str], Sequence[str]] | None = None,
    airflow_url: str | None = None,
) -> list[SpanSpec]:
    """The run's span first, then one span per task try that has a start or an end time.

    `task_assets` maps (dag_id, task_id) to the Asset URIs the task writes (for data products
    produced by an Asset); `airflow_url` (the UI's base URL) adds links to the run and tries.
    """
    if not run.terminal or run.end is None:
        raise ValueError(f"run {run.dag_id}/{run.run_id} has not finished: nothing to trace")
    url = None
    if airflow_url:
        dag, run_id = quote(run.dag_id, safe=""), quote(run.run_id, safe="")
        url = f"{airflow_url.rstrip('/')}/dags/{dag}/runs/{run_id}"
    ctx = _Run(
        run=run,
        catalog=catalog,
        task_assets=task_assets or {},
        trace_id=trace_id_of(run),
        root_id=run_span_id(run),
        end_ns=to_ns(run.end),
        common={
            "cicd.pipeline.name": run.dag_id,
            "cicd.pipeline.run.id": run.run_id,
            "impactwatch.dag_id": run.dag_id,
            "impactwatch.run_id": run.run_id,
            "impactwatch.team": catalog.team_of_pipeline(run.dag_id),
        },
        url=url,
    )
    kept = sorted(
        (t for t in tries_of_execution(run, tries) if t.start is not None or t.end is not None),
        key=lambda t: (t.task_id, t.map_index, t.try_number),
    )  # a try with neither time never started: nothing real to show
    children = [_try_span(ctx, t) for t in kept]
    return [_run_span(ctx, children, run_cost(kept, catalog)), *children]


def _try_span(ctx: _Run, t: TaskTry) -> SpanSpec:
    result = TASK_RESULT.get(t.state or "", CUT_SHORT)
    attrs: dict[str, AttributeValue] = {
        **ctx.common,
        "cicd.pipeline.task.name": t.task_id,
        "cicd.pipeline.task.run.id": f"{t.task_id}/{t.map_index}/{t.try_number}",
        "cicd.pipeline.task.run.result": result,
        "impactwatch.task_id": t.task_id,
        "impactwatch.map_index": t.map_index,
        "impactwatch.try_number": t.try_number,
        "impactwatch.state": t.state or "none",
        "impactwatch.cost": float(try_cost(t, ctx.catalog)),
        "impactwatch.cost.currency": ctx.catalog.cost.currency,
    }
    if ctx.url is not None:
        url = f"{ctx.url}/tasks/{quote(t.task_id, safe='')}"
        if t.map_index >= 0:
            url += f"/mapped/{t.map_index}"
        attrs["cicd.pipeline.task.run.url.full"] = f"{url}?try_number={t.try_number}"
    if result == "failure":
        attrs["error.type"] = t.state or "failed"
    _optional(attrs, "impactwatch.pool", t.pool)
    _optional(attrs, "impactwatch.queue", t.queue)
    _optional(attrs, "impactwatch.operator", t.operator)
    datasets = _task_datasets(ctx.catalog, t, ctx.task_assets)
    if datasets:
        attrs["impactwatch.dataset"] = datasets
    if t.queued is not None and t.start is not None:
        attrs["impactwatch.queued_seconds"] = max(t.start - t.queued, 0.0)
    if t.cpu_seconds is not None:
        attrs["impactwatch.cpu_seconds"] = t.cpu_seconds
    if t.peak_rss_bytes is not None:
        attrs["impactwatch.peak_rss_bytes"] = int(t.peak_rss_bytes)
    start = to_ns(t.start if t.start is not None else t.end)  # type: ignore[arg-type]
    end = to_ns(t.end) if t.end is not None else ctx.end_ns  # still running: cut by the run
    failed = result == "failure"
    return SpanSpec(
        name=t.task_id,
        trace_id=ctx.trace_id,
        span_id=try_span_id(t),
        parent_id=ctx.root_id,
        kind="internal",
        start_ns=start,
        end_ns=max(end, start),
        attributes=attrs,
        error=f"task {t.task_id} try {t.try_number} failed" if failed else None,
    )


def _run_span(ctx: _Run, children: list[SpanSpec], cost: Decimal) -> SpanSpec:
    run, catalog = ctx.run, ctx.catalog
    result = RUN_RESULT.get(run.state or "", "failure")
    attrs: dict[str, AttributeValue] = {
        **ctx.common,
        "cicd.pipeline.action.name": ACTION,
        "cicd.pipeline.result": result,
        "impactwatch.state": run.state or "none",
        "impactwatch.cost": float(cost),
        "impactwatch.cost.currency": catalog.cost.currency,
    }
    if ctx.url is not None:
        attrs["cicd.pipeline.run.url.full"] = ctx.url
    if result == "failure":
        attrs["error.type"] = run.state or "failed"
    _optional(attrs, "impactwatch.run_type", run.run_type)
    pipeline = catalog.pipelines.get(run.dag_id)
    if pipeline is not None:
        attrs["impactwatch.tier"] = pipeline.tier
    datasets = {d.name for d in catalog.datasets_produced_by(run.dag_id)}
    for c in children:
        datasets.update(c.attributes.get("impactwatch.dataset", ()))  # type: ignore[arg-type]
    if datasets:
        attrs["impactwatch.dataset"] = tuple(sorted(datasets))
    if run.clear_number:
        attrs["impactwatch.clear_number"] = run.clear_number
    if run.queued_at is not None and run.start is not None:
        attrs["impactwatch.queued_seconds"] = max(run.start - run.queued_at, 0.0)
    started = run.start if run.start is not None else run.queued_at
    start = (
        to_ns(started)
        if started is not None
        else min((c.start_ns for c in children), default=ctx.end_ns)
    )
    return SpanSpec(
        name=f"{ACTION} {run.dag_id}",
        trace_id=ctx.trace_id,
        span_id=ctx.root_id,
        parent_id=None,
        kind="server",
        start_ns=min(start, ctx.end_ns),
        end_ns=ctx.end_ns,
        attributes=attrs,
        error=f"dag run {run.dag_id} failed" if result == "failure" else None,
    )


def _task_datasets(
    catalog: Catalog, t: TaskTry, assets: Mapping[tuple[str, str], Sequence[str]]
) -> tuple[str, ...]:
    """Data products the task updates: named `dag_id.task_id`, or through an Asset it writes."""
    names = {d.name for d in catalog.datasets_produced_by(t.dag_id, t.task_id)}
    for uri in assets.get((t.dag_id, t.task_id), ()):
        names.update(d.name for d in catalog.datasets_for_asset(uri))
    return tuple(sorted(names))


def _optional(attrs: dict[str, AttributeValue], name: str, value: str | None) -> None:
    if value:
        attrs[name] = value
