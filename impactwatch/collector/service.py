"""The collector service: poll loop, intake, and the state the HTTP endpoints serve.

Forgiving when running: a failed cycle (Airflow DB down, state DB error) is counted, logged once
per failure streak, and retried with backoff; `/metrics` keeps serving the last state, marked
stale. After any failure the poller restarts from the persisted watermarks, so nothing read in
the failed cycle is lost.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as CycleTimeout
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry

from impactwatch.catalog.airflow_merge import (
    AssetDeclaration,
    DagDeclaration,
    merge_airflow_declarations,
)
from impactwatch.catalog.model import Catalog
from impactwatch.collector.airflow.poller import Poller, PollResult, make_airflow_engine
from impactwatch.collector.events import Batch, DagRun
from impactwatch.collector.metrics.exporter import ImpactwatchCollector
from impactwatch.collector.metrics.exposition import CachedExposition
from impactwatch.collector.metrics.state import DagInfo, MetricsState
from impactwatch.collector.settings import CollectorSettings
from impactwatch.collector.state.schema import MIGRATIONS
from impactwatch.collector.state.store import Changes, Store, make_engine
from impactwatch.collector.tracing.spans import tracing_enabled

if TYPE_CHECKING:
    from impactwatch.collector.tracing.export import RunTracer

log = logging.getLogger(__name__)

MAX_BACKOFF = 30.0


class CycleTimeoutError(TimeoutError):
    """Airflow's DB stopped answering mid-cycle (e.g. a black-holed connection)."""


def describe_error(exc: BaseException) -> str:
    """One line about an error, without URLs or parameters that could carry secrets."""
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200] if text else ''}"


class CollectorService:
    def __init__(
        self,
        settings: CollectorSettings,
        catalog: Catalog,
        *,
        clock: Callable[[], float] = time.time,
        progress: Callable[[int, int], None] | None = None,
        tracer: RunTracer | None = None,
    ) -> None:
        self.settings = settings
        self.base_catalog = catalog
        self.clock = clock
        self.progress = progress
        engine = make_engine(settings.state_db)
        if not settings.migrate_on_start:
            MIGRATIONS.require_head(engine)  # else the store upgrades it
        self.store = Store(engine)
        self.state = MetricsState(catalog)
        self.state.restore(self.store.summary())
        self.exposition = CachedExposition(self.state, clock)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(ImpactwatchCollector(self.state, clock))
        self.airflow = make_airflow_engine(settings.airflow_db, settings.statement_timeout_ms)
        self.poller: Poller | None = None
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="impactwatch-poll")
        self.stop_event = threading.Event()
        self._declarations_at = 0.0
        self._failures = 0
        self._notes: set[str] = set()
        self.tracer = tracer if tracer is not None else _tracer_from_env(settings)
        self._trace_failures = 0

    # --- one cycle --------------------------------------------------------------------------
    def _poller(self) -> Poller:
        if self.poller is None:
            self.poller = Poller(
                self.airflow,
                self.store.watermarks(),
                self.store.open_run_keys(),
                backfill_days=self.settings.backfill_days,
                clock=self.clock,
                progress=self.progress,
            )
        return self.poller

    def _apply_declarations(
        self, dags: list[DagDeclaration], assets: list[AssetDeclaration]
    ) -> None:
        """Merge DAG tags, owners and Asset extras into the catalog; the YAML wins."""
        merged, notes = merge_airflow_declarations(self.base_catalog, dags, assets)
        for note in set(notes) - self._notes:
            log.info("catalog: %s", note)
        self._notes |= set(notes)
        changed = merged != self.state.catalog
        self.state.set_catalog(merged)
        self.state.set_dags(
            {d.dag_id: DagInfo(paused=d.is_paused) for d in dags},
            {a.uri: [dag_id for dag_id, _task in a.producers] for a in assets},
        )
        if changed:
            self.state.restore(self.store.summary())
        if self.tracer is not None:
            self.tracer.set_assets(assets)
        self._declarations_at = self.clock()

    def poll_once(self) -> PollResult | None:
        """One cycle; returns what was read, or None after a failure (counted and logged)."""
        started = time.perf_counter()
        try:
            result = self._read_airflow()
        except Exception as exc:  # the DB can fail in many ways; every one is survivable
            self._failed("airflow", exc)
            return None
        try:
            changes = self.store.ingest(result.batch, result.watermarks)
        except Exception as exc:
            self._failed("state", exc)
            return None
        now = self.clock()
        self.state.apply(changes, "poller", now)
        self._trace(result.batch.dag_runs, now)
        self.state.set_running(result.running)
        self.state.set_platform(
            pools=result.pools,
            import_errors=result.import_errors,
            heartbeat=result.heartbeat,
            missed_deadlines=result.missed_deadlines,
        )
        self.state.record_xcom(result.xcom_sizes, now)
        self.evaluate()
        with self.state.lock:
            stats = self.state.self_stats
            for table, n in result.rows_read.items():
                stats.rows_read[table] += n
            stats.poll_duration.observe((), time.perf_counter() - started)
            stats.last_poll = self.clock()
            stats.stale = False
        self.exposition.refresh()
        if self._failures:
            log.info("airflow metadata DB reachable again after %d failed cycle(s)", self._failures)
            self._failures = 0
        return result

    def _read_airflow(self) -> PollResult:
        """The Airflow-DB part of a cycle, bounded in time even if a connection hangs.

        Server-side statement timeouts do not help when the network black-holes a connection
        mid-query; the cycle then runs in a worker we abandon, with a fresh connection pool.
        The worker touches only the poller it was handed, never the service.
        """
        poller = self._poller()
        due = self.clock() - self._declarations_at >= self.settings.declarations_interval

        def read() -> tuple[tuple[list[DagDeclaration], list[AssetDeclaration]] | None, PollResult]:
            return (poller.declarations() if due else None), poller.poll()

        future = self._reader.submit(read)
        try:
            declarations, result = future.result(timeout=self.settings.cycle_timeout)
        except CycleTimeout:
            self._reader.shutdown(wait=False)
            self._reader = ThreadPoolExecutor(1, thread_name_prefix="impactwatch-poll")
            hung, self.airflow = (
                self.airflow,
                make_airflow_engine(self.settings.airflow_db, self.settings.statement_timeout_ms),
            )
            threading.Thread(target=hung.dispose, daemon=True).start()
            raise CycleTimeoutError(
                f"no answer from Airflow's DB within {self.settings.cycle_timeout:.0f}s"
            ) from None
        if declarations is not None:
            self._apply_declarations(*declarations)
        return result

    def evaluate(self) -> None:
        pending = self.state.evaluate(self.clock())
        try:
            self.store.save_breaches(pending)
        except Exception as exc:
            self._failed("state", exc)

    def _trace(self, runs: list[DagRun], now: float) -> None:
        """Traces of the runs the poller read as finished (the poller, not the listener: its
        read of a finished run has every try). Never fails the cycle; retried next cycle."""
        if self.tracer is None:
            return
        try:
            self.tracer.trace_finished(runs, self.store, self.state.catalog, now)
        except Exception as exc:
            if not self._trace_failures:
                log.warning("traces: not sent, retrying next cycle: %s", describe_error(exc))
            self._trace_failures += 1
        else:
            self._trace_failures = 0

    def _failed(self, db: str, exc: BaseException) -> None:
        self.poller = None  # restart from the persisted watermarks: nothing half-read is lost
        self._declarations_at = 0.0
        with self.state.lock:
            self.state.self_stats.db_errors[db] += 1
            self.state.self_stats.stale = True
        if self._failures == 0:
            log.warning("%s DB error, serving last state and retrying: %s", db, describe_error(exc))
        self._failures += 1

    def ingest_events(self, batch: Batch) -> Changes:
        """The intake path: listener events into the same store, observed once."""
        changes = self.store.ingest(batch)
        self.state.apply(changes, "listener", self.clock())
        return changes

    async def ingest_events_in_loop(self, batches: list[Batch]) -> list[Changes | BaseException]:
        """Several intake requests stored as groups from the intake's event loop
        (`Store.ingest_in_loop`), then observed without waiting for the metrics lock (a scrape
        holds it while it renders): each one's changes, or its error."""
        results = await self.store.ingest_in_loop(batches)
        now = self.clock()
        for changes in results:
            if isinstance(changes, Changes):
                self.state.apply_soon(changes, "listener", now)
        return results

    def backoff(self) -> float:
        if not self._failures:
            return self.settings.poll_interval
        return min(self.settings.poll_interval * 2 ** min(self._failures - 1, 5), MAX_BACKOFF)

    # --- the loop ---------------------------------------------------------------------------
    def run(self) -> None:
        while not self.stop_event.is_set():
            result = self.poll_once()
            if result is not None and not result.caught_up:
                continue  # backfill: next chunk at once
            if result is None:
                self.evaluate()
            self.stop_event.wait(self.backoff())

    def stop(self) -> None:
        self.stop_event.set()

    def close(self) -> None:
        self.stop()
        self._reader.shutdown(wait=False)
        self.airflow.dispose()
        if self.tracer is not None:
            self.tracer.close()
        self.store.close()


def _tracer_from_env(settings: CollectorSettings) -> RunTracer | None:
    """OpenTelemetry traces when OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT is set; else None (and
    the SDK is not even imported)."""
    if not tracing_enabled(os.environ):
        return None
    from impactwatch.collector.tracing.export import RunTracer

    return RunTracer.from_env(max_age=settings.trace_max_age, airflow_url=settings.airflow_url)
