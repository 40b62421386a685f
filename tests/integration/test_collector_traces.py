"""OpenTelemetry traces from the real collector over a real Airflow 3 metadata DB (SQLite), sent
with the SDK's OTLP/HTTP exporter to a local receiver, and to an endpoint that refuses."""

from __future__ import annotations

import socket
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy import select

from impactwatch.catalog.loader import load_catalog
from impactwatch.collector.cost.pricing import try_cost
from impactwatch.collector.state.schema import dag_run_t
from impactwatch.collector.state.store import Store, make_engine
from impactwatch.collector.tracing.spans import to_ns
from tests.integration.helpers import EXAMPLE_CATALOG, catch_up, make_service, registry
from tests.support.otlp_receiver import OtlpReceiver, ReceivedSpan

pytestmark = pytest.mark.integration

RUNS = 7  # the populated scenario's runs, all finished
DAY = 86400.0


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    server = OtlpReceiver()
    yield server
    server.stop()


def otel_env(monkeypatch: pytest.MonkeyPatch, endpoint: str) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")  # ms: send soon, tests stay short


def by_trace(spans: list[ReceivedSpan]) -> dict[int, list[ReceivedSpan]]:
    traces: dict[int, list[ReceivedSpan]] = defaultdict(list)
    for s in spans:
        traces[s.trace_id].append(s)
    return traces


def roots(spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
    return [s for s in spans if s.parent_span_id is None]


def test_one_trace_per_finished_run_with_a_span_per_try(
    airflow_sqlite_url: str,
    tmp_path: Path,
    receiver: OtlpReceiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    otel_env(monkeypatch, receiver.url)
    service = make_service(
        airflow_sqlite_url,
        tmp_path,
        trace_max_age=30 * DAY,
        airflow_url="http://airflow:8080",  # the Airflow UI, for links from spans
    )
    try:
        assert service.tracer is not None
        catch_up(service)
        spans = receiver.wait_for(lambda s: len(roots(s)) >= RUNS, timeout=30)
    finally:
        service.close()
    traces = by_trace(spans)
    assert len(traces) == RUNS == len(roots(spans))
    # every try the collector stored (both sources merged) is one span, at its real times
    store = Store(make_engine(service.settings.state_db))
    with store.engine.connect() as conn:
        run_keys = list(conn.scalars(select(dag_run_t.c.k)))
    stored = [t for tries in store.run_tries(run_keys).values() for t in tries]
    assert stored
    expected = {
        (t.dag_id, t.run_id, t.task_id, t.map_index, t.try_number): t
        for t in stored
        if t.start is not None or t.end is not None
    }
    children = [s for s in spans if s.parent_span_id is not None]
    got = {
        (
            s.attributes["impactwatch.dag_id"],
            s.attributes["impactwatch.run_id"],
            s.attributes["impactwatch.task_id"],
            s.attributes["impactwatch.map_index"],
            s.attributes["impactwatch.try_number"],
        ): s
        for s in children
    }
    assert len(got) == len(children) and set(got) == set(expected)
    catalog = load_catalog(EXAMPLE_CATALOG)
    for key, span in got.items():
        t = expected[key]
        assert (span.start_ns, span.end_ns) == (to_ns(t.start), to_ns(t.end)), key  # type: ignore[arg-type]
        assert span.kind == "SPAN_KIND_INTERNAL"
        assert span.attributes["impactwatch.cost"] == pytest.approx(float(try_cost(t, catalog)))
        assert span.attributes["impactwatch.state"] == t.state
        root = roots(traces[span.trace_id])[0]
        assert span.parent_span_id == root.span_id
    # runs: their pipeline, team, result; the failed one is an error
    by_dag: dict[str, list[ReceivedSpan]] = defaultdict(list)
    for root in roots(spans):
        assert root.kind == "SPAN_KIND_SERVER" and root.name.startswith("RUN ")
        assert root.resource["service.name"] == "impactwatch-collector"
        assert root.scope == "impactwatch.collector"
        by_dag[root.attributes["cicd.pipeline.name"]].append(root)
    failed = [r for r in by_dag["market_data_ingest"] if r.status == "STATUS_CODE_ERROR"]
    assert len(failed) == 1 and failed[0].attributes["cicd.pipeline.result"] == "failure"
    assert failed[0].attributes["error.type"] == "failed"
    assert failed[0].attributes["impactwatch.team"] == "markets"
    validate = [
        s
        for s in traces[failed[0].trace_id]
        if s.attributes.get("cicd.pipeline.task.name") == "validate_market_data"
    ]
    assert [s.status for s in validate] == ["STATUS_CODE_ERROR"]
    # retries: both tries of submit_to_regulator, the first an error, the second a success
    (reg,) = by_dag["regulatory_submission"]
    submit = sorted(
        (s for s in traces[reg.trace_id] if s.name == "submit_to_regulator"),
        key=lambda s: s.attributes["impactwatch.try_number"],
    )
    assert [(s.attributes["impactwatch.try_number"], s.status) for s in submit] == [
        (1, "STATUS_CODE_ERROR"),
        (2, "STATUS_CODE_UNSET"),
    ]
    assert submit[1].attributes["impactwatch.dataset"] == ("regulatory_submission",)
    assert reg.status == "STATUS_CODE_UNSET" and reg.attributes["cicd.pipeline.result"] == "success"
    # mapped tasks: one span per map index; the data product written through an Asset
    (risk,) = by_dag["risk_scoring"]
    risk_spans = traces[risk.trace_id]
    assert sorted(
        s.attributes["impactwatch.map_index"] for s in risk_spans if s.name == "score_customers"
    ) == [0, 1, 2]
    (publish,) = [s for s in risk_spans if s.name == "publish_scores"]
    assert publish.attributes["impactwatch.dataset"] == ("customer_risk_scores",)
    assert publish.attributes["cicd.pipeline.task.run.url.full"] == (
        "http://airflow:8080/dags/risk_scoring/runs/"
        f"{quote(risk.attributes['cicd.pipeline.run.id'], safe='')}"  # ':' and '+' escaped
        "/tasks/publish_scores?try_number=1"
    )
    assert "customer_risk_scores" in risk.attributes["impactwatch.dataset"]
    # the pool and the cost of the heavy ETL
    (etl,) = by_dag["nightly_heavy_etl"]
    etl_tries = [s for s in traces[etl.trace_id] if s.parent_span_id is not None]
    assert {s.attributes["impactwatch.pool"] for s in etl_tries} >= {"heavy_etl"}
    assert etl.attributes["impactwatch.cost"] == pytest.approx(
        sum(s.attributes["impactwatch.cost"] for s in etl_tries)
    )
    assert etl.attributes["impactwatch.cost"] > 0

    # exactly once: another cycle and a restart on the same state DB send nothing more
    sent = len(spans)
    again = make_service(airflow_sqlite_url, tmp_path, trace_max_age=30 * DAY)
    try:
        catch_up(again)
        again.poll_once()
    finally:
        again.close()  # flushes whatever was queued
    assert len(receiver.wait_for(lambda s: len(s) > sent, timeout=1.0)) == sent


def test_old_runs_are_not_traced_on_first_start(
    airflow_sqlite_url: str,
    tmp_path: Path,
    receiver: OtlpReceiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """History read on first start (backfill) older than trace_max_age sends no trace."""
    otel_env(monkeypatch, receiver.url)
    service = make_service(airflow_sqlite_url, tmp_path, trace_max_age=0)
    try:
        catch_up(service)
        assert service.tracer is not None and service.tracer.traced == 0
    finally:
        service.close()
    assert receiver.requests == 0 and receiver.spans == []


def refused_endpoint() -> str:
    """A loopback URL where nothing listens: connections are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_a_dead_endpoint_neither_slows_nor_breaks_the_cycle(
    airflow_sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    otel_env(monkeypatch, refused_endpoint())
    # an exporter that retries for a minute: a poll cycle that waited on it would take that long
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "60")
    service = make_service(airflow_sqlite_url, tmp_path, trace_max_age=30 * DAY)
    try:
        started = time.monotonic()
        catch_up(service)
        assert service.tracer is not None and service.tracer.traced == RUNS
        time.sleep(0.5)  # the SDK's thread is now retrying against the refused port
        assert service.poll_once() is not None
        took = time.monotonic() - started
        assert took < 30, f"the cycle waited on the dead endpoint: {took:.1f}s"
        assert registry(service).get_sample_value(
            "impactwatch_collector_last_successful_poll_timestamp_seconds"
        )
    finally:
        started = time.monotonic()
        service.close()
        closed_in = time.monotonic() - started
    assert closed_in < 20, f"close waited on the dead endpoint: {closed_in:.1f}s"
