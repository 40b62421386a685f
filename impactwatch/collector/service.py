"""The collector service: poll loop, intake, and the state the HTTP endpoints serve.

One thread, the writer, owns the state store and the metrics state. The poll thread reads
Airflow's DB and hands what it read to the writer's queue; the intake hands parsed batches
(`submit`). The writer takes everything queued, writes it as one transaction (`Store.write`:
one bad batch fails alone), observes what is new in the metrics state, and resolves each
sender's future. Readers (scrapes, /healthz) take the metrics state's lock for a moment.

Forgiving when running: a failed cycle (Airflow DB down, state DB error) is counted, logged once
per failure streak, and retried with backoff; `/metrics` keeps serving the last state, marked
stale. After any failure the poller restarts from the persisted watermarks, so nothing read in
the failed cycle is lost.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as CycleTimeout
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import DataError, IntegrityError

from impactwatch.catalog.airflow_merge import (
    AssetDeclaration,
    DagDeclaration,
    merge_airflow_declarations,
)
from impactwatch.catalog.model import Catalog
from impactwatch.collector.airflow.poller import Poller, PollResult, make_airflow_engine
from impactwatch.collector.baselines.learner import feed
from impactwatch.collector.cost.history import load_cost_history
from impactwatch.collector.cost.tracking import COST_HISTORY_RUNS
from impactwatch.collector.events import SEP, Batch, DagRun
from impactwatch.collector.metrics.exposition import CachedExposition
from impactwatch.collector.metrics.persisted import decode_series
from impactwatch.collector.metrics.state import XCOM_WINDOW, DagInfo, MetricsState
from impactwatch.collector.settings import CollectorSettings
from impactwatch.collector.state.schema import MIGRATIONS
from impactwatch.collector.state.store import Changes, Counts, Store, make_engine
from impactwatch.collector.tracing.spans import tracing_enabled

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from impactwatch.collector.tracing.export import RunTracer

log = logging.getLogger(__name__)

MAX_BACKOFF = 30.0
GROUP_EVENTS = 10_000  # events written in one transaction at most
HISTORY_DAYS = 28  # how far back the learned baselines are read on start (windows fill first)


class QueueFull(Exception):
    """The writer has `intake_queue` requests waiting already: try again later."""


class BatchRefused(ValueError):
    """The state DB refused a value of this intake batch, written alone: sending the same
    batch again would fail again."""


@dataclass(eq=False)
class _Job:
    """What the writer is handed: a batch to store (from the intake, or a poll cycle's), or a
    call to run on the writer's thread."""

    source: str
    batch: Batch = field(default_factory=Batch)
    poll: PollResult | None = None
    started: float = 0.0  # when the poll cycle began (perf_counter)
    call: Callable[[], Any] | None = None
    future: Future[Any] = field(default_factory=Future)


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
        engine = make_engine(settings.state_db, settings.state_timeout_ms)
        if not settings.migrate_on_start:
            MIGRATIONS.require_head(engine)  # else the store upgrades it
        self.store = Store(engine)
        self._cost_history = partial(
            load_cost_history, self.store.engine, per_dag=COST_HISTORY_RUNS
        )
        self.state = MetricsState(catalog)
        self.exposition = CachedExposition(self.state, clock)
        # Set once the writer has restored the state from the state DB (`_restore`); until
        # then /healthz and /metrics answer 503 "starting", and queued work waits.
        self.ready = threading.Event()
        # Set once the learned baselines hold the state DB's history (`_learn_history`).
        self.learned = threading.Event()
        self.airflow = self._airflow_engine()
        self.poller: Poller | None = None
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="impactwatch-poll")
        self.stop_event = threading.Event()
        self._declarations_at = 0.0
        self._failures = 0
        self._notes: set[str] = set()
        self.tracer = tracer if tracer is not None else _tracer_from_env(settings)
        self._trace_failures = 0
        self._queue: queue.Queue[_Job | None] = queue.Queue(settings.intake_queue)
        self._closed = False
        self._writer = threading.Thread(
            target=self._write_forever, name="impactwatch-writer", daemon=True
        )
        self._writer.start()

    # --- the writer -------------------------------------------------------------------------
    def submit(self, batch: Batch) -> Future[Changes]:
        """Queue an intake batch for the writer; its future is done once the batch is stored
        and observed (or failed: `QueueFull` at once when too many wait). Thread-safe, never
        blocks."""
        job = _Job("listener", batch)
        if self._closed:
            job.future.set_exception(RuntimeError("the collector is stopping"))
            return job.future
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            job.future.set_exception(QueueFull(f"{self.settings.intake_queue} requests waiting"))
        return job.future

    def _on_writer(self, job: _Job) -> Future[Any]:
        """Queue a job of the poll thread's, waiting for room if need be."""
        if self._closed:
            job.future.set_exception(RuntimeError("the collector is stopping"))
        else:
            self._queue.put(job)
        return job.future

    def _call(self, fn: Callable[[], Any]) -> Future[Any]:
        return self._on_writer(_Job("call", call=fn))

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Whether the state was restored (waiting up to `timeout` seconds for it)."""
        return self.ready.wait(timeout)

    def _restore(self) -> None:
        """The state as the state DB holds it, before the writer takes any queued work: every
        counter and histogram series where it was, breaches by label, the latest runs' gauges
        (docs/design-notes.md, "Counters survive restarts"). Retried until it succeeds."""
        failures = 0
        while not self.stop_event.is_set():
            started = time.perf_counter()
            try:
                now = self.clock()
                restored = decode_series(self.store.series())
                if restored.unreadable:
                    log.warning("state DB: %d series unreadable, left out", restored.unreadable)
                stale = self.state.restore_counters(
                    restored,
                    self.store.breach_counts(),
                    self.store.xcom_sizes(now - XCOM_WINDOW),
                    now,
                )
                summary = self.store.summary(self.state.producer_tasks)
                self.state.restore(summary, self._cost_history if stale else None)
                self._learn_history(now)
                if stale:  # priced again: stored, so the next start need not
                    self.store.save_counts(self.state.cost_counts())
                self.exposition.refresh()  # the whole render of the restored state
            except Exception as exc:
                failures += 1
                if failures == 1:
                    log.warning("state DB: cannot restore, retrying: %s", describe_error(exc))
                with self.state.lock:
                    self.state.self_stats.db_errors["state"] += 1
                self.stop_event.wait(min(2.0**failures, MAX_BACKOFF))
                continue
            log.info("state restored in %.1f s", time.perf_counter() - started)
            self.ready.set()
            return

    def _learn_history(self, now: float) -> None:
        """Learn the baselines (collector/baselines) from the state DB's last HISTORY_DAYS in
        a thread of their own, into new baselines that the writer installs once read: at
        10,000 DAGs that is millions of tries, which must hold up neither the start nor the
        writer's queue. Meanwhile the live baselines go on (empty on start: no learned limit
        yet, `/healthz` says `"learning": true`). Called on the writer."""
        fresh, generation = self.state.new_baselines()
        dags = frozenset(self.state.dags)
        self.learned.clear()

        def read() -> None:
            started = time.perf_counter()
            try:
                for runs, assets in self.store.history(now - HISTORY_DAYS * 86400.0):
                    if self.stop_event.is_set():
                        return
                    feed(fresh, runs, assets, None, dags)
                installed = self._call(partial(self.state.install_baselines, fresh, generation))
                if installed.result():
                    log.info("baselines learned in %.1f s", time.perf_counter() - started)
                    self.learned.set()
            except Exception as exc:
                if self.stop_event.is_set():
                    return
                log.warning(
                    "baselines: history not read, learning from new facts only: %s",
                    describe_error(exc),
                )
                with contextlib.suppress(Exception):
                    self._call(partial(self._learning_failed, generation)).result()

        threading.Thread(target=read, name="impactwatch-learn", daemon=True).start()

    def _learning_failed(self, generation: int) -> None:
        self.state.drop_relearning(generation)
        with self.state.lock:
            self.state.self_stats.db_errors["state"] += 1

    def _write_forever(self) -> None:
        self._restore()
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            group, events = [first], len(first.batch)
            while events < GROUP_EVENTS:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stopping = True
                    break
                group.append(job)
                events += len(job.batch)
            # (a job its sender gave up on, and cancelled, before it was taken is not written)
            group = [job for job in group if job.future.set_running_or_notify_cancel()]
            try:
                self._handle(group)
                if self._queue.empty():  # idle: render what changed now, not in a scrape
                    self.exposition.refresh()
            except Exception as exc:  # a bug: answer every sender, keep writing
                log.exception("the writer failed on %d job(s)", len(group))
                for job in group:
                    if not job.future.done():
                        job.future.set_exception(exc)
        while True:  # stopped: what is left waits for nothing
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job is not None:
                job.future.set_exception(RuntimeError("the collector is stopping"))

    def _handle(self, group: list[_Job]) -> None:
        writes = [job for job in group if job.call is None]
        for job in writes:  # the listener's events of DAGs Airflow does not know: no series
            if job.poll is None:
                job.batch.held_dags = frozenset(job.batch.dag_ids() - self.state.dags.keys())
        batches = [(job.batch, job.poll.watermarks if job.poll else None) for job in writes]
        now = self.clock()
        results = self.store.write(batches, partial(self._stage, now=now)) if batches else []
        failed: list[Exception] = []
        lost = 0
        for job, got in zip(writes, results, strict=True):
            if isinstance(got, Exception):
                if job.poll is None and isinstance(got, IntegrityError | DataError):
                    log.warning(
                        "state DB refused a batch of %d event(s): %s",
                        len(job.batch),
                        describe_error(got),
                    )
                    got = BatchRefused(
                        "the state DB refused a value of this batch (see the collector's log); "
                        "it would be refused again"
                    )
                elif job.poll is None:  # (a poll cycle's failure is counted by the poll thread)
                    failed.append(got)
                    lost += len(job.batch)
                job.future.set_exception(got)
                continue
            self.state.apply_facts(got, job.source, now)
            if job.poll is not None:
                try:
                    self._observe_poll(job, now)
                except Exception as exc:
                    job.future.set_exception(exc)
                    continue
            job.future.set_result(got)
        if failed:
            with self.state.lock:
                self.state.self_stats.db_errors["state"] += 1
            log.warning(
                "could not store %d request(s), %d event(s): %s",
                len(failed),
                lost,
                describe_error(failed[0]),
            )
        for job in group:
            if job.call is not None:
                try:
                    job.future.set_result(job.call())
                except Exception as exc:
                    job.future.set_exception(exc)

    def _stage(self, changes: list[Changes], now: float) -> tuple[Counts, Callable[[], None]]:
        """Inside the store's transaction: the counts to save with these changes, and the
        metrics state's taking them once committed (metrics/staged.py)."""
        staged = self.state.stage(changes, now)
        return staged.counts(), staged.commit

    def _observe_poll(self, job: _Job, now: float) -> None:
        """A poll cycle's snapshots into the metrics state, once its events are stored."""
        result = job.poll
        assert result is not None
        self.state.set_running(result.running)
        self.state.set_platform(
            pools=result.pools,
            import_errors=result.import_errors,
            heartbeat=result.heartbeat,
            missed_deadlines=result.missed_deadlines,
        )
        if result.xcom_sizes:
            self.store.save_xcom_sizes(
                ((f"{d}{SEP}{at!r}", d, at, n) for d, at, n in result.xcom_sizes),
                now - XCOM_WINDOW,
            )
        self.state.record_xcom(result.xcom_sizes, now)
        self._evaluate()
        with self.state.lock:
            stats = self.state.self_stats
            for table, n in result.rows_read.items():
                stats.rows_read[table] += n
            stats.poll_duration.observe((), time.perf_counter() - job.started)
            stats.last_poll = self.clock()
            stats.stale = False
            stats.stale_reason = None

    def _evaluate(self) -> None:
        """Breaches visible now: stored, then counted (so /metrics is never ahead of the DB)."""
        staged = self.state.stage_breaches(self.clock())
        self.store.save_breaches(staged.breaches)
        staged.commit()

    def _set_declarations(
        self, catalog: Catalog, dags: list[DagDeclaration], assets: list[AssetDeclaration]
    ) -> None:
        changed = catalog != self.state.catalog
        self.state.set_catalog(catalog)
        known = {d.dag_id for d in dags}
        gone = set(self.state.dags) - known if self.state.dags else set()
        self.store.forget_series(gone)  # first: a kill between the two leaves nothing extra
        self.state.set_dags(
            {d.dag_id: DagInfo(paused=d.is_paused) for d in dags},
            {a.uri: a.producers for a in assets},
        )
        if changed:
            self.state.restore(self.store.summary(self.state.producer_tasks), self._cost_history)
            self._learn_history(self.clock())  # the data products' cadences may be new

    def _count_failure(self, db: str, reason: str) -> None:
        with self.state.lock:
            self.state.self_stats.db_errors[db] += 1
            self._set_stale(reason)

    def _set_stale(self, reason: str) -> None:
        with self.state.lock:
            self.state.self_stats.stale = True
            self.state.self_stats.stale_reason = reason

    # --- one cycle (the poll thread) --------------------------------------------------------
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
        self._call(partial(self._set_declarations, merged, dags, assets)).result()
        if self.tracer is not None:
            self.tracer.set_assets(assets)
        self._declarations_at = self.clock()

    def poll_once(self) -> PollResult | None:
        """One cycle; returns what was read, or None after a failure (counted and logged)."""
        started = time.perf_counter()
        try:
            declarations, result = self._read_airflow()
        except Exception as exc:  # the DB can fail in many ways; every one is survivable
            self._failed("airflow", exc)
            return None
        try:
            if declarations is not None:
                self._apply_declarations(*declarations)
            self._on_writer(_Job("poller", result.batch, result, started)).result()
        except Exception as exc:
            self._failed("state", exc)
            return None
        self._trace(result.batch.dag_runs, self.clock())
        if self._failures:
            log.info("airflow metadata DB reachable again after %d failed cycle(s)", self._failures)
            self._failures = 0
        return result

    def _read_airflow(
        self,
    ) -> tuple[tuple[list[DagDeclaration], list[AssetDeclaration]] | None, PollResult]:
        """The Airflow-DB part of a cycle, bounded in time even if a connection hangs.

        Server-side statement timeouts do not help when the network black-holes a connection
        mid-query: TCP keepalives end such a connection (`tcp_liveness`), a cycle still running
        after `poll_interval` marks the state stale (so within two poll intervals of Airflow's
        DB going silent), and one past `cycle_timeout` runs on in a worker we abandon, with a
        fresh connection pool. The worker touches only the poller it was handed, never the
        service.
        """
        poller = self._poller()
        due = self.clock() - self._declarations_at >= self.settings.declarations_interval

        def read() -> tuple[tuple[list[DagDeclaration], list[AssetDeclaration]] | None, PollResult]:
            return (poller.declarations() if due else None), poller.poll()

        future = self._reader.submit(read)
        late = min(self.settings.poll_interval, self.settings.cycle_timeout)
        try:
            return future.result(timeout=late)
        except CycleTimeout:
            if late < self.settings.cycle_timeout:
                reason = f"Airflow's DB: a poll cycle running for over {late:.0f}s"
                self._call(partial(self._set_stale, reason))
        try:
            return future.result(timeout=self.settings.cycle_timeout - late)
        except CycleTimeout:
            self._reader.shutdown(wait=False)
            self._reader = ThreadPoolExecutor(1, thread_name_prefix="impactwatch-poll")
            hung, self.airflow = self.airflow, self._airflow_engine()
            threading.Thread(target=hung.dispose, daemon=True).start()
            raise CycleTimeoutError(
                f"no answer from Airflow's DB within {self.settings.cycle_timeout:.0f}s"
            ) from None

    def _airflow_engine(self) -> Engine:
        s = self.settings
        return make_airflow_engine(s.airflow_db, s.statement_timeout_ms, s.airflow_dead_after)

    def evaluate(self) -> None:
        """Count the breaches visible now (on the writer) and store them."""
        try:
            self._call(self._evaluate).result()
        except Exception as exc:
            self._failed("state", exc)

    def _trace(self, runs: list[DagRun], now: float) -> None:
        """Traces of the runs the poller read as finished (the poller, not the listener: its
        read of a finished run has every try), on the writer, which owns the store; spans only
        go onto the SDK's queue there. Never fails the cycle; retried next cycle."""
        tracer = self.tracer
        if tracer is None:
            return
        try:
            self._call(
                lambda: tracer.trace_finished(runs, self.store, self.state.catalog, now)
            ).result()
        except Exception as exc:
            if not self._trace_failures:
                log.warning("traces: not sent, retrying next cycle: %s", describe_error(exc))
            self._trace_failures += 1
        else:
            self._trace_failures = 0

    def _failed(self, db: str, exc: BaseException) -> None:
        self.poller = None  # restart from the persisted watermarks: nothing half-read is lost
        self._declarations_at = 0.0
        with contextlib.suppress(Exception):  # (stopping: nothing to count in any more)
            self._call(partial(self._count_failure, db, f"{db} DB: {describe_error(exc)}")).result()
        if self._failures == 0:
            log.warning("%s DB error, serving last state and retrying: %s", db, describe_error(exc))
        self._failures += 1

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

    def close(self, timeout: float = 10.0) -> None:
        """Stop polling, write what is queued, close the databases."""
        self.stop()
        if not self._closed:
            self._closed = True
            with contextlib.suppress(queue.Full):  # a writer stuck on the DB: left behind
                self._queue.put(None, timeout=timeout)
            self._writer.join(timeout)
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
