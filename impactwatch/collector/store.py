"""The collector's own state DB: idempotent event store, watermarks, counted breaches.

SQLite file by default, PostgreSQL by URL (SQLAlchemy Core). Both sources write the same keys;
`ingest` merges what is new, tells which facts are seen for the first time (so metrics observe
them once), and saves the poller's watermarks in the same transaction, so a restart neither
recounts nor misses anything.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    Engine,
    Table,
    bindparam,
    func,
    insert,
    select,
    update,
)

from impactwatch.collector.events import AssetUpdate, Batch, DagRun, TaskTry
from impactwatch.collector.merge import RUN_FIELDS, TRY_FIELDS, merge_run, merge_try
from impactwatch.collector.state_schema import (
    RUN_DELAY,
    RUN_FINISHED,
    TRY_QUEUE_WAIT,
    TRY_SUCCEEDED,
    asset_update_t,
    breach_t,
    dag_run_t,
    make_engine,
    metadata,
    task_try_t,
    watermark_t,
)

__all__ = ["Changes", "Store", "Summary", "make_engine", "task_try_t"]

_CHUNK = 400
OPEN_STATES = ("queued", "running")  # what the poller tracks until it ends (or is deleted)


@dataclass
class Changes:
    """What an ingest saw for the first time; the metrics state observes exactly these."""

    finished_runs: list[tuple[DagRun, list[TaskTry]]] = field(default_factory=list)
    terminal_runs: list[DagRun] = field(default_factory=list)
    started_runs: list[DagRun] = field(default_factory=list)
    queued_tries: list[TaskTry] = field(default_factory=list)
    succeeded_tries: list[TaskTry] = field(default_factory=list)
    assets: list[AssetUpdate] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=dict)

    def count(self, outcome: str, n: int = 1) -> None:
        if n:
            self.outcomes[outcome] = self.outcomes.get(outcome, 0) + n


@dataclass
class Summary:
    """What the metrics state needs back after a restart."""

    last_success: dict[str, float]
    last_failure: dict[str, float]
    task_success: dict[tuple[str, str], float]
    asset_updates: dict[str, float]
    breaches: set[str]
    open_runs: list[DagRun]


def _db_col(name: str) -> str:
    return "end_" if name == "end" else name


def _write(
    conn: Any,
    table: Table,
    fields: tuple[str, ...],
    inserts: list[dict[str, Any]],
    updates: list[dict[str, Any]],
) -> None:
    """Batched inserts of new rows and updates (by key `_k`) of the merged fields."""
    if inserts:
        conn.execute(insert(table), inserts)
    if updates:
        cols = {_db_col(f): bindparam(_db_col(f)) for f in fields}
        conn.execute(
            update(table)
            .where(table.c.k == bindparam("_k"))
            .values(**cols, observed=bindparam("observed")),
            updates,
        )


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
    )


def _chunks(items: list[Any], size: int = _CHUNK) -> Iterable[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


class Store:
    """Idempotent event store. Thread-safe: one writer at a time inside this process."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        metadata.create_all(engine)

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
        """Merge `batch`, save `watermarks` and `breaches`, all in one transaction."""
        changes = Changes()
        with self._lock, self.engine.begin() as conn:
            self._ingest_tries(conn, batch.task_tries, changes)
            self._ingest_runs(conn, batch.dag_runs, changes)
            self._ingest_assets(conn, batch.assets, changes)
            if watermarks:
                self._save_watermarks(conn, watermarks)
            if breaches:
                self._save_breaches(conn, breaches)
        return changes

    def save_breaches(self, breaches: Mapping[str, float]) -> None:
        if breaches:
            with self._lock, self.engine.begin() as conn:
                self._save_breaches(conn, breaches)

    def _save_breaches(self, conn: Any, breaches: Mapping[str, float]) -> None:
        known = set()
        keys = list(breaches)
        for part in _chunks(keys):
            known.update(conn.scalars(select(breach_t.c.k).where(breach_t.c.k.in_(part))))
        rows = [{"k": k, "at": at} for k, at in breaches.items() if k not in known]
        if rows:
            conn.execute(insert(breach_t), rows)

    def _save_watermarks(self, conn: Any, watermarks: Mapping[str, str]) -> None:
        existing = {r.name for r in conn.execute(select(watermark_t.c.name))}
        new = [{"name": n, "value": v} for n, v in watermarks.items() if n not in existing]
        old = [{"n": n, "v": v} for n, v in watermarks.items() if n in existing]
        if new:
            conn.execute(insert(watermark_t), new)
        if old:
            conn.execute(
                update(watermark_t)
                .where(watermark_t.c.name == bindparam("n"))
                .values(value=bindparam("v")),
                old,
            )

    @staticmethod
    def _existing(conn: Any, table: Table, keys: list[str]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for part in _chunks(keys):
            for row in conn.execute(select(table).where(table.c.k.in_(part))):
                found[row.k] = row
        return found

    def _ingest_tries(self, conn: Any, tries: list[TaskTry], changes: Changes) -> None:
        if not tries:
            return
        merged: dict[str, TaskTry] = {}
        for t in tries:  # later events in one batch win
            merged[t.key] = t if t.key not in merged else merge_try(merged[t.key], t)
        existing = self._existing(conn, task_try_t, list(merged))
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        for key, incoming in merged.items():
            row = existing.get(key)
            observed = 0 if row is None else row.observed
            current = incoming if row is None else merge_try(_try_from_row(row), incoming)
            if row is not None and current == _try_from_row(row):
                changes.count("duplicate")
                continue
            if (
                current.queued is not None
                and current.start is not None
                and not (observed & TRY_QUEUE_WAIT)
            ):
                observed |= TRY_QUEUE_WAIT
                changes.queued_tries.append(current)
            if current.state == "success" and not observed & TRY_SUCCEEDED:
                observed |= TRY_SUCCEEDED
                changes.succeeded_tries.append(current)
            values = {_db_col(f): getattr(current, f) for f in TRY_FIELDS}
            values["observed"] = observed
            if row is None:
                changes.count("new")
                inserts.append(
                    {
                        "k": key,
                        "run_k": current.run_key,
                        "dag_id": current.dag_id,
                        "run_id": current.run_id,
                        "task_id": current.task_id,
                        "map_index": current.map_index,
                        "try_number": current.try_number,
                        **values,
                    }
                )
            else:
                changes.count("updated")
                updates.append({"_k": key, **values})
        _write(conn, task_try_t, TRY_FIELDS, inserts, updates)

    def _ingest_runs(self, conn: Any, runs: list[DagRun], changes: Changes) -> None:
        if not runs:
            return
        merged: dict[str, DagRun] = {}
        for r in runs:
            merged[r.key] = r if r.key not in merged else merge_run(merged[r.key], r)
        existing = self._existing(conn, dag_run_t, list(merged))
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        finished: list[DagRun] = []
        for key, incoming in merged.items():
            row = existing.get(key)
            observed = 0 if row is None else row.observed
            if row is None:
                current = incoming
            else:
                before = _run_from_row(row)
                if incoming.clear_number > before.clear_number:
                    observed = 0  # cleared and re-run: a new execution of the same run
                    current = incoming
                else:
                    current = merge_run(before, incoming)
                if current == before:
                    changes.count("duplicate")
                    continue
                if current.terminal and current.state != before.state:
                    changes.terminal_runs.append(current)
            if row is None and current.terminal:
                changes.terminal_runs.append(current)
            if current.terminal and current.end is not None and not observed & RUN_FINISHED:
                observed |= RUN_FINISHED
                finished.append(current)
            if (
                current.start is not None
                and current.run_type == "scheduled"
                and current.run_after is not None
                and not observed & RUN_DELAY
            ):
                observed |= RUN_DELAY
                changes.started_runs.append(current)
            values = {_db_col(f): getattr(current, f) for f in RUN_FIELDS}
            values["observed"] = observed
            if row is None:
                changes.count("new")
                inserts.append(
                    {"k": key, "dag_id": current.dag_id, "run_id": current.run_id, **values}
                )
            else:
                changes.count("updated")
                updates.append({"_k": key, **values})
        _write(conn, dag_run_t, RUN_FIELDS, inserts, updates)
        if finished:
            tries: dict[str, list[TaskTry]] = {r.key: [] for r in finished}
            for part in _chunks(list(tries)):
                for row in conn.execute(select(task_try_t).where(task_try_t.c.run_k.in_(part))):
                    tries[row.run_k].append(_try_from_row(row))
            changes.finished_runs.extend((r, tries[r.key]) for r in finished)

    def _ingest_assets(self, conn: Any, assets: list[AssetUpdate], changes: Changes) -> None:
        if not assets:
            return
        unique = {a.key: a for a in assets}
        known = set(self._existing(conn, asset_update_t, list(unique)))
        new = [a for k, a in unique.items() if k not in known]
        changes.count("duplicate", len(assets) - len(new))
        changes.count("new", len(new))
        if new:
            conn.execute(
                insert(asset_update_t),
                [
                    {
                        "k": a.key,
                        "uri": a.uri,
                        "timestamp": a.timestamp,
                        "dag_id": a.dag_id,
                        "task_id": a.task_id,
                        "run_id": a.run_id,
                    }
                    for a in new
                ],
            )
            changes.assets.extend(new)

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
        return Summary(last_success, last_failure, task_success, asset_updates, breaches, open_runs)

    def open_run_keys(self) -> set[tuple[str, str]]:
        with self.engine.connect() as conn:
            q = select(dag_run_t.c.dag_id, dag_run_t.c.run_id).where(
                dag_run_t.c.state.in_(OPEN_STATES)
            )
            return {(d, r) for d, r in conn.execute(q)}
