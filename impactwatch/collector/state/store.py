"""The collector's own state DB: idempotent event store, watermarks, counted breaches.

SQLite file by default, PostgreSQL by URL (SQLAlchemy Core). Both sources write the same keys;
`ingest` merges what is new, tells which facts are seen for the first time (so metrics observe
them once), and saves the poller's watermarks in the same transaction, so a restart neither
recounts nor misses anything. Ingests that arrive while another is being written are written
together in one transaction (group commit): the poller's by the writer thread (`writer.py`), the
intake's by its event loop (`ingest_in_loop`). Each is done once its group has committed. The
write path runs statements compiled once (`state_writes.py`) on connections of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from sqlalchemy import (
    Engine,
    bindparam,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.util import greenlet_spawn

from impactwatch.collector.cost.history import DagHistory, load_cost_history
from impactwatch.collector.cost.pricing import Pricing
from impactwatch.collector.cost.tracking import COST_HISTORY_RUNS
from impactwatch.collector.events import Batch, DagRun, TaskTry
from impactwatch.collector.state.loop_connection import LoopConnection
from impactwatch.collector.state.merge import Changes, merge_assets, merge_runs, merge_tries
from impactwatch.collector.state.schema import (
    asset_update_t,
    breach_t,
    create_or_upgrade,
    dag_run_t,
    make_engine,
    task_try_t,
    traced_run_t,
    watermark_t,
)
from impactwatch.collector.state.writer import GroupCommit
from impactwatch.collector.state.writes import StateWrites, wrap_error

__all__ = ["Changes", "Store", "Summary", "make_engine", "task_try_t"]

_CHUNK = 400
OPEN_STATES = ("queued", "running")  # what the poller tracks until it ends (or is deleted)


@dataclass
class Summary:
    """What the metrics state needs back after a restart."""

    last_success: dict[str, float]
    last_failure: dict[str, float]
    task_success: dict[tuple[str, str], float]
    asset_updates: dict[str, float]
    breaches: set[str]
    open_runs: list[DagRun]
    # each DAG's latest finished runs, priced when called with a Pricing (a costly read)
    cost_history: Callable[[Pricing], dict[str, DagHistory]] | None = None


def _run_from_row(row: Any) -> DagRun:
    return DagRun(
        row.dag_id,
        row.run_id,
        row.state,
        row.run_type,
        row.logical_date,
        row.run_after,
        row.queued_at,
        row.start,
        row.end_,
        row.clear_number,
    )


def _try_from_row(row: Any) -> TaskTry:
    rss = int(row.peak_rss_bytes) if row.peak_rss_bytes is not None else None
    return TaskTry(
        row.dag_id,
        row.run_id,
        row.task_id,
        row.map_index,
        row.try_number,
        row.state,
        row.start,
        row.end_,
        row.queued,
        row.duration,
        row.pool,
        row.queue,
        row.operator,
        row.cpu_seconds,
        rss,
        row.requested_cpu,
        int(row.requested_memory_bytes) if row.requested_memory_bytes is not None else None,
    )


def _chunks(items: list[Any], size: int = _CHUNK) -> Iterable[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


class _Link:
    """One connection of the write path, opened when first needed (and again after it died)."""

    def __init__(self, open_: Callable[[], Any]) -> None:
        self.open = open_
        self.raw: Any = None  # a pooled DBAPI connection, or a LoopConnection


@dataclass
class _Job:
    """One `ingest` call, as the group writer sees it."""

    batch: Batch
    watermarks: Mapping[str, str] | None
    breaches: Mapping[str, float] | None
    changes: Changes = field(default_factory=Changes)


class Store:
    """Idempotent event store. Thread-safe: one writer at a time inside this process.

    `group_commit=False` gives each ingest a transaction of its own (a baseline for benchmarks).
    """

    def __init__(self, engine: Engine, *, group_commit: bool = True) -> None:
        self.engine = engine
        self._lock = threading.RLock()  # one writer at a time; the loop takes it ahead
        create_or_upgrade(engine)
        self._sql = StateWrites(engine.dialect)
        self._link = _Link(engine.raw_connection)  # the write path's own connection
        self._loop_link: _Link | None = None  # the intake loop's (PostgreSQL), on first use
        self.writer: GroupCommit[_Job] = GroupCommit(
            self._write_group, size=lambda job: len(job.batch) or 1, enabled=group_commit
        )

    def close(self) -> None:
        """Write what is queued, give back the write path's connection, close the pool. (The
        intake loop's connection is closed by the loop: `close_in_loop`.)"""
        self.writer.close()
        with self._lock:
            if self._link.raw is not None:
                self._link.raw.close()
                self._link.raw = None
        self.engine.dispose()

    async def close_in_loop(self) -> None:
        """Close the intake loop's connection, on that loop."""
        link, self._loop_link = self._loop_link, None
        if link is not None and link.raw is not None:
            with contextlib.suppress(Exception):
                await link.raw.dbapi_connection.close()

    # --- watermarks -------------------------------------------------------------------------
    def watermarks(self) -> dict[str, str]:
        with self.engine.connect() as conn:
            return {r.name: r.value for r in conn.execute(select(watermark_t))}

    # --- ingest -----------------------------------------------------------------------------
    def ingest(
        self,
        batch: Batch,
        watermarks: Mapping[str, str] | None = None,
        breaches: Mapping[str, float] | None = None,
    ) -> Changes:
        """Merge `batch`, save `watermarks` and `breaches`, all in one transaction (shared with
        the ingests that arrived meanwhile); returns once it has committed."""
        job = _Job(batch, watermarks, breaches)
        self.writer.submit(job)
        return job.changes

    def ingest_now(self, batches: list[Batch]) -> list[Changes | BaseException]:
        """Ingests written in the calling thread, now, in groups of up to the writer's
        `max_items` events: each one's changes, or its error."""
        return self._ingest_groups(batches, self._link)

    async def ingest_in_loop(self, batches: list[Batch]) -> list[Changes | BaseException]:
        """`ingest_now` for the intake's event loop (intake_server.py).

        SQLite: written right here. A group write is a fraction of a millisecond of this
        process's CPU, and a writer thread would cost more in GIL hand-offs than it saves.
        PostgreSQL: the same code run in a greenlet, on the loop's own asyncio connection
        (loop_connection.py). Each wait for PostgreSQL's answer lets the loop serve other
        requests.

        The store's lock is taken without blocking the loop: while the poller writes, the loop
        serves on. (The lock is re-entrant and the greenlet runs in the loop's thread: the
        write's own `with self._lock` passes.)
        """
        while not self._lock.acquire(blocking=False):  # the poller is writing: wait, not block
            await asyncio.sleep(0.002)
        try:
            if self.engine.dialect.name == "sqlite":
                return self.ingest_now(batches)
            if self._loop_link is None:
                _args, connect_args = self.engine.dialect.create_connect_args(self.engine.url)
                self._loop_link = _Link(partial(LoopConnection.open, connect_args))
            link = self._loop_link
            try:
                return await greenlet_spawn(self._ingest_groups, batches, link)
            except asyncio.CancelledError:  # timed out or stopping: its transaction is unknown
                if link.raw is not None:
                    with contextlib.suppress(Exception):
                        link.raw.invalidate()
                    link.raw = None
                raise
        finally:
            self._lock.release()  # (re-entrant: the write in this thread took it again)

    def _ingest_groups(self, batches: list[Batch], link: _Link) -> list[Changes | BaseException]:
        out: list[Changes | BaseException] = []
        group: list[_Job] = []
        events = 0
        for batch in [*batches, None]:
            size = len(batch) if batch is not None else 0
            if group and (batch is None or events + size > self.writer.max_items):
                try:
                    errors = self._write_group(group, link)
                except Exception as exc:
                    errors = [exc] * len(group)
                self.writer.count(len(group))
                out += [j.changes if e is None else e for j, e in zip(group, errors, strict=True)]
                group, events = [], 0
            if batch is not None:
                group.append(_Job(batch, None, None))
                events += size
        return out

    def save_breaches(self, breaches: Mapping[str, float]) -> None:
        if breaches:
            self._transaction(lambda cursor: self._sql.save_breaches(cursor, breaches))

    def _write_group(
        self, jobs: list[_Job], link: _Link | None = None
    ) -> list[BaseException | None]:
        link = link or self._link
        try:
            self._commit(jobs, link)
        except (IntegrityError, DataError):
            if len(jobs) == 1:
                raise
            return [self._alone(job, link) for job in jobs]  # a bad row fails only its job
        return [None] * len(jobs)

    def _alone(self, job: _Job, link: _Link) -> BaseException | None:
        try:
            self._commit([job], link)
        except Exception as exc:
            return exc
        return None

    def _commit(self, jobs: list[_Job], link: _Link) -> None:
        """The group in one transaction (see `_transaction`)."""
        changes: list[Changes] = []

        def merge(cursor: Any) -> None:
            changes[:] = [Changes() for _ in jobs]  # afresh if written again
            self._merge_group(cursor, jobs, changes)

        self._transaction(merge, link)
        for job, seen in zip(jobs, changes, strict=True):
            job.changes = seen

    def _transaction(self, work: Callable[[Any], None], link: _Link | None = None) -> None:
        """`work(cursor)` and a commit on one of the write path's own connections (see
        state_writes.py), one writer at a time. Again on a new connection if that one was dead
        (the DB restarted; it is not pinged before use): `work` must be safe to run twice, as
        ingest is. Driver errors are raised as SQLAlchemy's (IntegrityError, ...)."""
        link = link or self._link
        dialect = self.engine.dialect
        for attempt in (1, 2):
            with self._lock:
                if link.raw is None:
                    try:
                        link.raw = link.open()
                    except dialect.loaded_dbapi.Error as exc:  # SQLAlchemy's pool wraps its own
                        raise wrap_error(exc, None, dialect, True) from exc
                raw = link.raw
                cursor = raw.cursor()
                try:
                    work(cursor)
                    raw.commit()
                    return
                except Exception as exc:
                    dead = isinstance(exc, dialect.loaded_dbapi.Error) and dialect.is_disconnect(
                        exc, raw.dbapi_connection, cursor
                    )
                    self._abandon(link, dead)
                    if dead and attempt == 1:
                        continue
                    wrapped = wrap_error(exc, None, dialect, dead)
                    if wrapped is exc:
                        raise
                    raise wrapped from exc
                finally:
                    with contextlib.suppress(Exception):
                        cursor.close()

    def _abandon(self, link: _Link, dead: bool) -> None:
        """Roll back after a failed write. A dead connection is dropped with the pool's idle
        ones, dead as well after a restart (what SQLAlchemy does on a disconnect); one that
        cannot roll back is dropped alone."""
        raw = link.raw
        if not dead:
            try:
                raw.rollback()
                return
            except Exception:
                pass
        with contextlib.suppress(Exception):
            raw.invalidate()
        link.raw = None
        if dead:
            self.engine.dispose()

    def _merge_group(self, cursor: Any, jobs: list[_Job], changes: list[Changes]) -> None:
        sql = self._sql
        tries = [job.batch.task_tries for job in jobs]
        if any(tries):
            keys = {t.key for batch in tries for t in batch}
            known = {
                row.k: (_try_from_row(row), row.observed) for row in sql.tries_by_key(cursor, keys)
            }
            dirty = merge_tries(known, tries, changes)
            if dirty:
                sql.upsert_tries.executemany(cursor, [sql.try_row(t, o) for t, o in dirty.values()])
        runs = [job.batch.dag_runs for job in jobs]
        if any(runs):
            keys = {r.key for batch in runs for r in batch}
            known_runs = {
                row.k: (_run_from_row(row), row.observed) for row in sql.runs_by_key(cursor, keys)
            }
            dirty_runs, finished = merge_runs(known_runs, runs, changes)
            if dirty_runs:
                rows = [sql.run_row(r, o) for r, o in dirty_runs.values()]
                sql.upsert_runs.executemany(cursor, rows)
            ended = {r.key for done in finished for r in done}
            if ended:  # their tries as stored now, this group's included
                by_run: dict[str, list[TaskTry]] = {k: [] for k in ended}
                for row in sql.tries_by_run(cursor, ended):
                    by_run[row.run_k].append(_try_from_row(row))
                for seen, done in zip(changes, finished, strict=True):
                    seen.finished_runs.extend((r, by_run[r.key]) for r in done)
        assets = [job.batch.assets for job in jobs]
        if any(assets):
            keys = {a.key for batch in assets for a in batch}
            stamps = {row.k: row.timestamp for row in sql.asset_times(cursor, keys)}
            new = merge_assets(stamps, assets, changes)
            if new:
                sql.upsert_assets.executemany(cursor, [sql.asset_row(k, a) for k, a in new.items()])
        watermarks: dict[str, str] = {}
        breaches: dict[str, float] = {}
        for job in jobs:  # later jobs win
            watermarks.update(job.watermarks or {})
            breaches.update(job.breaches or {})
        if watermarks:
            sql.save_watermarks(cursor, watermarks)
        if breaches:
            sql.save_breaches(cursor, breaches)

    # --- restart ----------------------------------------------------------------------------
    def summary(self) -> Summary:
        """Last successes, dataset updates, counted breaches and open runs, for a restart."""
        last_success: dict[str, float] = {}
        last_failure: dict[str, float] = {}
        with self.engine.connect() as conn:
            q = (
                select(dag_run_t.c.dag_id, dag_run_t.c.state, func.max(dag_run_t.c.end_))
                .where(dag_run_t.c.state.in_(("success", "failed")))
                .group_by(dag_run_t.c.dag_id, dag_run_t.c.state)
            )
            for dag_id, state, end in conn.execute(q):
                if end is not None:
                    (last_success if state == "success" else last_failure)[dag_id] = end
            q = (
                select(task_try_t.c.dag_id, task_try_t.c.task_id, func.max(task_try_t.c.end_))
                .where(task_try_t.c.state == "success")
                .group_by(task_try_t.c.dag_id, task_try_t.c.task_id)
            )
            task_success = {(d, t): e for d, t, e in conn.execute(q) if e is not None}
            q = select(asset_update_t.c.uri, func.max(asset_update_t.c.timestamp)).group_by(
                asset_update_t.c.uri
            )
            asset_updates = {u: ts for u, ts in conn.execute(q)}
            breaches = set(conn.scalars(select(breach_t.c.k)))
            q = select(dag_run_t).where(dag_run_t.c.state.in_(OPEN_STATES))
            open_runs = [_run_from_row(r) for r in conn.execute(q)]
        history = partial(load_cost_history, self.engine, per_dag=COST_HISTORY_RUNS)
        return Summary(
            last_success, last_failure, task_success, asset_updates, breaches, open_runs, history
        )

    def open_run_keys(self) -> set[tuple[str, str]]:
        with self.engine.connect() as conn:
            q = select(dag_run_t.c.dag_id, dag_run_t.c.run_id).where(
                dag_run_t.c.state.in_(OPEN_STATES)
            )
            return {(d, r) for d, r in conn.execute(q)}

    # --- traces (OpenTelemetry) -------------------------------------------------------------
    def untraced_runs(self, runs: list[DagRun]) -> list[DagRun]:
        """The runs whose current execution (`clear_number`) has no trace sent yet."""
        done: dict[str, int] = {}
        with self.engine.connect() as conn:
            for part in _chunks([r.key for r in runs]):
                q = select(traced_run_t.c.k, traced_run_t.c.clear_number)
                done.update((k, c) for k, c in conn.execute(q.where(traced_run_t.c.k.in_(part))))
        return [r for r in runs if done.get(r.key, -1) < r.clear_number]

    def run_tries(self, run_keys: list[str]) -> dict[str, list[TaskTry]]:
        """Every stored task try of these runs (both sources merged), by run key."""
        tries: dict[str, list[TaskTry]] = {k: [] for k in run_keys}
        with self.engine.connect() as conn:
            for part in _chunks(run_keys):
                for row in conn.execute(select(task_try_t).where(task_try_t.c.run_k.in_(part))):
                    tries[row.run_k].append(_try_from_row(row))
        return tries

    def mark_traced(self, runs: list[DagRun], at: float) -> None:
        """Remember that these runs' traces were sent, so no restart sends them again."""
        with self._lock, self.engine.begin() as conn:
            keys = [r.key for r in runs]
            known: set[str] = set()
            for part in _chunks(keys):
                q = select(traced_run_t.c.k).where(traced_run_t.c.k.in_(part))
                known.update(conn.scalars(q))
            rows = [{"k": r.key, "clear_number": r.clear_number, "at": at} for r in runs]
            new = [row for row in rows if row["k"] not in known]
            old = [
                {"_k": row["k"], "c": row["clear_number"], "a": at}
                for row in rows
                if row["k"] in known
            ]
            if new:
                conn.execute(insert(traced_run_t), new)
            if old:
                conn.execute(
                    update(traced_run_t)
                    .where(traced_run_t.c.k == bindparam("_k"))
                    .values(clear_number=bindparam("c"), at=bindparam("a")),
                    old,
                )
