"""Traces of finished DAG runs: the pure span builder, and the SDK into an in-memory exporter."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from impactwatch.catalog.airflow_merge import AssetDeclaration
from impactwatch.catalog.model import Catalog
from impactwatch.collector.cost.pricing import try_cost
from impactwatch.collector.events import Batch, DagRun, TaskTry
from impactwatch.collector.service import CollectorService
from impactwatch.collector.settings import CollectorSettings
from impactwatch.collector.state.store import Store, make_engine
from impactwatch.collector.tracing.export import (
    RunTracer,
    redact,
    service_resource,
    traces_endpoint,
)
from impactwatch.collector.tracing.spans import (
    run_span_id,
    run_trace,
    to_ns,
    trace_id_of,
    tracing_enabled,
    try_span_id,
)

CATALOG = Catalog.model_validate(
    {
        "teams": {"risk": {"slack_channel": "#risk"}},
        "datasets": {
            "scores": {"team": "risk", "produced_by": "risk_scoring.publish"},
            "segments": {"produced_by": "s3://lake/segments"},
            "whole_run": {"produced_by": "risk_scoring"},
        },
        "pipelines": {"risk_scoring": {"team": "risk", "tier": "critical"}},
        "cost": {"pools": {"heavy": {"cpu": 4, "memory_gb": 8}}},
    }
)


def ts(hour: int, minute: int, second: int = 0, micro: int = 0) -> float:
    return datetime(2025, 6, 2, hour, minute, second, micro, tzinfo=UTC).timestamp()


def ns(hour: int, minute: int, second: int = 0, micro: int = 0) -> int:
    whole = int(datetime(2025, 6, 2, hour, minute, second, tzinfo=UTC).timestamp())
    return whole * 1_000_000_000 + micro * 1_000


def finished_run(state: str = "failed", run_id: str = "scheduled__2025-06-02", **kw) -> DagRun:  # type: ignore[no-untyped-def]
    fields = {
        "run_type": "scheduled",
        "queued_at": ts(6, 0),
        "start": ts(6, 0, 2, 250_001),
        "end": ts(6, 9, 59, 999_999),
    }
    fields.update(kw)
    return DagRun(dag_id="risk_scoring", run_id=run_id, state=state, **fields)  # type: ignore[arg-type]


def tries(run_id: str = "scheduled__2025-06-02") -> list[TaskTry]:
    def t(task: str, mi: int, n: int, state: str, start: float | None, end: float | None, **kw):  # type: ignore[no-untyped-def]
        return TaskTry(
            dag_id="risk_scoring",
            run_id=run_id,
            task_id=task,
            map_index=mi,
            try_number=n,
            state=state,
            start=start,
            end=end,
            **kw,
        )

    return [
        t("extract", -1, 1, "failed", ts(6, 0, 5), ts(6, 1, 0), pool="heavy", queued=ts(6, 0, 3)),
        t("extract", -1, 2, "success", ts(6, 2, 0, 123_456), ts(6, 3, 0, 654_321), pool="heavy"),
        t("score", 0, 1, "success", ts(6, 3, 10), ts(6, 5, 0), pool="default_pool"),
        t("score", 1, 1, "success", ts(6, 3, 11), ts(6, 6, 0), pool="default_pool"),
        t("score", 2, 1, "failed", ts(6, 3, 12), ts(6, 7, 0), pool="default_pool"),
        t("publish", -1, 0, "upstream_failed", ts(6, 9, 59), ts(6, 9, 59)),
        t("notify", -1, 0, None, None, None),  # never started: no span
    ]


# --- the pure builder ---------------------------------------------------------------------------
def test_one_root_span_per_run_and_one_child_per_try_with_retries_and_mapped_tasks() -> None:
    run = finished_run()
    specs = run_trace(run, tries(), CATALOG)
    root, children = specs[0], specs[1:]
    assert root.parent_id is None and root.kind == "server" and root.name == "RUN risk_scoring"
    assert [(c.name, c.attributes["impactwatch.map_index"], c.attributes["impactwatch.try_number"])
            for c in children] == [
        ("extract", -1, 1),
        ("extract", -1, 2),
        ("publish", -1, 0),
        ("score", 0, 1),
        ("score", 1, 1),
        ("score", 2, 1),
    ]  # fmt: skip
    assert {c.trace_id for c in specs} == {trace_id_of(run)}
    assert all(c.parent_id == root.span_id and c.kind == "internal" for c in children)
    assert len({c.span_id for c in specs}) == len(specs)


def test_times_are_the_real_ones_to_the_microsecond() -> None:
    specs = run_trace(finished_run(), tries(), CATALOG)
    root = specs[0]
    assert (root.start_ns, root.end_ns) == (ns(6, 0, 2, 250_001), ns(6, 9, 59, 999_999))
    retry = next(s for s in specs if s.attributes.get("impactwatch.try_number") == 2)
    assert (retry.start_ns, retry.end_ns) == (ns(6, 2, 0, 123_456), ns(6, 3, 0, 654_321))
    assert to_ns(1_748_844_000.000001) == 1_748_844_000_000_001_000


def test_attributes_follow_the_cicd_semantic_conventions_and_impactwatch_names() -> None:
    run = finished_run()
    specs = run_trace(run, tries(), CATALOG, airflow_url="https://airflow.example.com/")
    root = specs[0]
    first_try = specs[1]
    expected_cost = try_cost(tries()[0], CATALOG)
    assert expected_cost > 0
    assert dict(first_try.attributes) == {
        "cicd.pipeline.name": "risk_scoring",
        "cicd.pipeline.run.id": run.run_id,
        "cicd.pipeline.task.name": "extract",
        "cicd.pipeline.task.run.id": "extract/-1/1",
        "cicd.pipeline.task.run.result": "failure",
        "cicd.pipeline.task.run.url.full": "https://airflow.example.com/dags/risk_scoring/runs/"
        "scheduled__2025-06-02/tasks/extract?try_number=1",
        "error.type": "failed",
        "impactwatch.dag_id": "risk_scoring",
        "impactwatch.run_id": run.run_id,
        "impactwatch.task_id": "extract",
        "impactwatch.map_index": -1,
        "impactwatch.try_number": 1,
        "impactwatch.state": "failed",
        "impactwatch.team": "risk",
        "impactwatch.pool": "heavy",
        "impactwatch.cost": float(expected_cost),
        "impactwatch.cost.currency": "USD",
        "impactwatch.queued_seconds": 2.0,
    }
    assert first_try.error == "task extract try 1 failed"
    total = sum((try_cost(t, CATALOG) for t in tries()), Decimal(0))
    assert root.attributes["impactwatch.cost"] == pytest.approx(float(total))
    assert {k: v for k, v in root.attributes.items() if k != "impactwatch.cost"} == {
        "cicd.pipeline.name": "risk_scoring",
        "cicd.pipeline.run.id": run.run_id,
        "cicd.pipeline.action.name": "RUN",
        "cicd.pipeline.result": "failure",
        "cicd.pipeline.run.url.full": "https://airflow.example.com/dags/risk_scoring/runs/"
        "scheduled__2025-06-02",
        "error.type": "failed",
        "impactwatch.dag_id": "risk_scoring",
        "impactwatch.run_id": run.run_id,
        "impactwatch.run_type": "scheduled",
        "impactwatch.state": "failed",
        "impactwatch.team": "risk",
        "impactwatch.tier": "critical",
        "impactwatch.cost.currency": "USD",
        "impactwatch.dataset": ("scores", "whole_run"),
        "impactwatch.queued_seconds": pytest.approx(2.250001),
    }
    mapped = next(s for s in specs if s.attributes.get("impactwatch.map_index") == 2)
    assert mapped.attributes["cicd.pipeline.task.run.url.full"].endswith(
        "/tasks/score/mapped/2?try_number=1"
    )


def test_status_is_error_only_on_failure() -> None:
    specs = run_trace(finished_run("failed"), tries(), CATALOG)
    by_result = {
        (
            s.name,
            s.attributes["impactwatch.try_number"],
            s.attributes.get("impactwatch.map_index"),
        ): s
        for s in specs[1:]
    }
    assert by_result[("extract", 2, -1)].error is None
    assert "error.type" not in by_result[("extract", 2, -1)].attributes
    assert by_result[("score", 1, 2)].error is not None
    skipped = by_result[("publish", 0, -1)]  # upstream_failed: never ran, the upstream failed
    assert skipped.error is None
    assert skipped.attributes["cicd.pipeline.task.run.result"] == "skip"
    assert skipped.attributes["impactwatch.dataset"] == ("scores",)
    ok = run_trace(finished_run("success"), tries()[1:2], CATALOG)[0]
    assert ok.error is None and ok.attributes["cicd.pipeline.result"] == "success"
    assert "error.type" not in ok.attributes


def test_datasets_from_assets_the_task_writes_and_unfinished_tries() -> None:
    run = finished_run("success")
    t = TaskTry(
        dag_id="risk_scoring",
        run_id=run.run_id,
        task_id="segment",
        map_index=-1,
        try_number=1,
        state="running",
        start=ts(6, 8, 0),
        end=None,
    )
    specs = run_trace(
        run, [t], CATALOG, task_assets={("risk_scoring", "segment"): ["s3://lake/segments"]}
    )
    child = specs[1]
    assert child.attributes["impactwatch.dataset"] == ("segments",)
    assert child.attributes["cicd.pipeline.task.run.result"] == "cancellation"
    assert child.end_ns == specs[0].end_ns  # cut short by the run's end
    assert specs[0].attributes["impactwatch.dataset"] == ("segments", "whole_run")
    assert (
        "impactwatch.tier"
        not in run_trace(
            DagRun(dag_id="other", run_id="r", state="success", end=ts(7, 0)), [], CATALOG
        )[0].attributes
    )


def test_ids_are_derived_so_a_restart_or_second_collector_sends_the_same() -> None:
    run = finished_run()
    a = run_trace(run, tries(), CATALOG)
    b = run_trace(finished_run(), list(reversed(tries())), CATALOG)
    assert [(s.trace_id, s.span_id, s.parent_id) for s in a] == [
        (s.trace_id, s.span_id, s.parent_id) for s in b
    ]
    assert a[0].span_id == run_span_id(run) and a[1].span_id == try_span_id(tries()[0])
    other = finished_run(run_id="manual__2025-06-02")
    assert trace_id_of(other) != trace_id_of(run)
    cleared = finished_run(clear_number=1)
    assert trace_id_of(cleared) != trace_id_of(run)  # a re-run is a new execution


def test_a_cleared_run_traces_only_its_own_execution() -> None:
    run = finished_run("success", clear_number=1, queued_at=ts(6, 4, 0), start=ts(6, 4, 1))
    spans = run_trace(run, tries(), CATALOG)[1:]
    # tries that ended before the clear belong to the first execution's trace
    assert sorted((s.name, s.attributes["impactwatch.map_index"]) for s in spans) == [
        ("publish", -1),
        ("score", 0),
        ("score", 1),
        ("score", 2),
    ]
    assert run_trace(run, tries(), CATALOG)[0].attributes["impactwatch.clear_number"] == 1


def test_an_unfinished_run_is_refused() -> None:
    with pytest.raises(ValueError, match="has not finished"):
        run_trace(
            DagRun(dag_id="risk_scoring", run_id="r", state="running", start=ts(6, 0)), [], CATALOG
        )


# --- on only when configured ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ""}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://tempo:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://tempo:4318/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://tempo:4318", "OTEL_SDK_DISABLED": "true"}, False),
    ],
)
def test_tracing_is_on_only_with_an_endpoint(env: dict[str, str], on: bool) -> None:
    assert tracing_enabled(env) is on


def test_the_service_has_no_tracer_without_an_endpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    settings = CollectorSettings(
        airflow_db=f"sqlite:///{tmp_path / 'airflow.db'}",
        state_db=f"sqlite:///{tmp_path / 'state.db'}",
    )
    service = CollectorService(settings, CATALOG)
    try:
        assert service.tracer is None
    finally:
        service.close()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    service = CollectorService(settings, CATALOG)
    try:
        assert isinstance(service.tracer, RunTracer)
        assert service.tracer.max_age == settings.trace_max_age
    finally:
        service.close()


@pytest.mark.parametrize(
    ("env", "url"),
    [
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://tempo:4318"}, "http://tempo:4318/v1/traces"),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "https://otel.example/"},
            "https://otel.example/v1/traces",
        ),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://ignored:4318",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://jaeger:4318/custom",
            },
            "http://jaeger:4318/custom",
        ),
    ],
)
def test_the_endpoint_resolves_as_the_exporter_does(env: dict[str, str], url: str) -> None:
    assert traces_endpoint(env) == url


def test_a_bad_endpoint_is_a_clear_error_without_its_secrets() -> None:
    env = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "tempo:4318"}
    with pytest.raises(ValueError, match=r"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT='tempo:4318' is not"):
        traces_endpoint(env)
    with pytest.raises(ValueError, match="OTEL_EXPORTER_OTLP_ENDPOINT") as err:
        traces_endpoint({"OTEL_EXPORTER_OTLP_ENDPOINT": "ftp://user:s3cret@host/?token=x"})
    assert "s3cret" not in str(err.value) and "token" not in str(err.value)
    assert redact("https://u:p@tempo:4318/v1/traces?k=v") == "https://tempo:4318/v1/traces"


# --- through the SDK ----------------------------------------------------------------------------
def in_memory(**kw: object) -> tuple[RunTracer, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    return RunTracer(SimpleSpanProcessor(exporter), **kw), exporter  # type: ignore[arg-type]


def test_spans_reach_the_exporter_with_derived_ids_real_times_and_error_status() -> None:
    tracer, exporter = in_memory()
    run = finished_run()
    specs = tracer.specs(run, tries(), CATALOG)
    tracer.emit(specs)
    spans = exporter.get_finished_spans()
    assert len(spans) == len(specs) == 7
    by_id: dict[int, ReadableSpan] = {s.context.span_id: s for s in spans}
    for spec in specs:
        span = by_id[spec.span_id]
        assert span.context.trace_id == spec.trace_id == trace_id_of(run)
        assert (span.start_time, span.end_time) == (spec.start_ns, spec.end_ns)
        assert span.name == spec.name
        assert dict(span.attributes or {}) == dict(spec.attributes)
        if spec.parent_id is None:
            assert span.parent is None and span.kind is SpanKind.SERVER
        else:
            assert span.parent is not None and span.parent.span_id == spec.parent_id
            assert span.kind is SpanKind.INTERNAL
        expected = StatusCode.ERROR if spec.error else StatusCode.UNSET
        assert span.status.status_code is expected
    root = by_id[run_span_id(run)]
    assert root.status.description == "dag run risk_scoring failed"
    assert spans[-1] is root  # children end first
    assert root.resource.attributes["service.name"] == "impactwatch-collector"
    assert root.resource.attributes["service.version"]
    assert root.instrumentation_scope is not None
    assert root.instrumentation_scope.name == "impactwatch.collector"


def test_each_run_is_its_own_trace() -> None:
    tracer, exporter = in_memory()
    tracer.emit(tracer.specs(finished_run(), tries(), CATALOG))
    other = "manual__x"
    tracer.emit(tracer.specs(finished_run("success", run_id=other), tries(other)[:2], CATALOG))
    trace_ids = {s.context.trace_id for s in exporter.get_finished_spans()}
    assert len(trace_ids) == 2
    roots = [s for s in exporter.get_finished_spans() if s.parent is None]
    assert sorted(r.attributes["impactwatch.run_id"] for r in roots) == sorted(  # type: ignore[index]
        ["scheduled__2025-06-02", other]
    )


def test_the_resource_can_be_renamed_by_the_standard_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "impactwatch-prod")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=prod")
    attrs = service_resource().attributes
    assert attrs["service.name"] == "impactwatch-prod"
    assert attrs["deployment.environment.name"] == "prod"
    assert attrs["service.version"]


def test_a_batch_processor_sends_on_close() -> None:
    exporter = InMemorySpanExporter()
    tracer = RunTracer(BatchSpanProcessor(exporter, schedule_delay_millis=60_000))
    tracer.emit(tracer.specs(finished_run(), tries(), CATALOG))
    assert exporter.get_finished_spans() == ()  # queued, not sent by the caller's thread
    tracer.close()
    assert len(exporter.get_finished_spans()) == 7


# --- exactly once, across restarts --------------------------------------------------------------
def store_at(tmp_path: Path) -> Store:
    return Store(make_engine(f"sqlite:///{tmp_path / 'state.db'}"))


def test_each_finished_run_is_traced_once_across_restarts(tmp_path: Path) -> None:
    run = finished_run()
    store = store_at(tmp_path)
    store.ingest(Batch(task_tries=tries(), dag_runs=[run]))
    now = run.end + 60  # type: ignore[operator]
    tracer, exporter = in_memory()
    tracer.set_assets([AssetDeclaration("s3://lake/segments", "segments", {}, ())])
    assert tracer.trace_finished([run, run], store, CATALOG, now) == 1
    assert len(exporter.get_finished_spans()) == 7
    assert tracer.trace_finished([run], store, CATALOG, now) == 0
    again, exporter2 = in_memory()  # a restart: a new process on the same state DB
    assert again.trace_finished([run], store_at(tmp_path), CATALOG, now) == 0
    assert exporter2.get_finished_spans() == ()
    # cleared and re-run: a new execution, a new trace
    rerun = finished_run(clear_number=1, queued_at=ts(6, 4, 0))
    assert again.trace_finished([rerun], store_at(tmp_path), CATALOG, now) == 1
    assert {s.context.trace_id for s in exporter2.get_finished_spans()} == {trace_id_of(rerun)}
    assert again.trace_finished([rerun], store_at(tmp_path), CATALOG, now) == 0


def test_old_and_unfinished_runs_are_not_traced(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    tracer, exporter = in_memory(max_age=3600.0)
    old = finished_run()
    running = DagRun(dag_id="risk_scoring", run_id="live", state="running", start=ts(6, 0))
    now = old.end + 3601  # type: ignore[operator]
    assert tracer.trace_finished([old, running], store, CATALOG, now) == 0
    assert exporter.get_finished_spans() == ()
    assert tracer.trace_finished([old], store, CATALOG, old.end + 3599) == 1  # type: ignore[operator]


def test_a_burst_waits_for_room_in_the_queue_instead_of_being_dropped(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    runs = [finished_run(run_id=f"r{i}") for i in range(3)]
    for run in runs:
        store.ingest(Batch(task_tries=tries(run.run_id), dag_runs=[run]))
    exporter = InMemorySpanExporter()  # 7 spans a run; room for 20: two runs now, one later
    processor = BatchSpanProcessor(
        exporter, max_queue_size=20, max_export_batch_size=20, schedule_delay_millis=60_000
    )
    tracer = RunTracer(processor, queue_size=20)
    now = runs[0].end + 60  # type: ignore[operator]
    assert tracer.trace_finished(runs, store, CATALOG, now) == 2
    assert tracer.backlog == 1
    assert tracer.trace_finished([], store, CATALOG, now) == 0  # still no room
    tracer.provider.force_flush()  # the SDK's thread sends the queue
    assert len(exporter.get_finished_spans()) == 14
    assert tracer.trace_finished([], store, CATALOG, now) == 1 and tracer.backlog == 0
    tracer.close()
    assert len({s.context.trace_id for s in exporter.get_finished_spans()}) == 3
    assert RunTracer(SimpleSpanProcessor(exporter)).trace_finished(runs, store, CATALOG, now) == 0


def test_a_state_db_error_loses_nothing(tmp_path: Path) -> None:
    class Flaky(Store):
        fail = True

        def untraced_runs(self, runs: list[DagRun]) -> list[DagRun]:
            if self.fail:
                self.fail = False
                raise RuntimeError("database is locked")
            return super().untraced_runs(runs)

    store = Flaky(make_engine(f"sqlite:///{tmp_path / 'state.db'}"))
    run = finished_run()
    store.ingest(Batch(task_tries=tries(), dag_runs=[run]))
    tracer, exporter = in_memory()
    now = run.end + 60  # type: ignore[operator]
    with pytest.raises(RuntimeError):
        tracer.trace_finished([run], store, CATALOG, now)
    assert tracer.trace_finished([], store, CATALOG, now) == 1  # the next cycle retries
    assert len(exporter.get_finished_spans()) == 7


def test_the_backlog_is_bounded_and_drops_the_oldest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import impactwatch.collector.tracing.export as trace_export

    monkeypatch.setattr(trace_export, "MAX_BACKLOG", 2)
    store = store_at(tmp_path)
    runs = [finished_run(run_id=f"r{i}", end=ts(6, 10 + i)) for i in range(3)]
    for run in runs:
        store.ingest(Batch(task_tries=tries(run.run_id), dag_runs=[run]))
    exporter = InMemorySpanExporter()
    processor = BatchSpanProcessor(
        exporter, max_queue_size=2, max_export_batch_size=2, schedule_delay_millis=60_000
    )
    tracer = RunTracer(processor, queue_size=2)
    tracer.emit(tracer.specs(runs[0], [], CATALOG))  # one span queued: a 7-span run won't fit
    now = ts(6, 30)
    assert tracer.trace_finished(runs, store, CATALOG, now) == 0
    assert tracer.backlog == 2 and tracer.dropped == 1
    tracer.close()
    assert store.untraced_runs(runs) == runs  # none marked traced
