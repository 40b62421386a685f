"""The intake's store path as it was before group commit (for `bench_intake.py`'s baseline).

`Store.ingest` up to the change that brought group commit, prebuilt statements and no ping on
checkout: one transaction per request under the store's lock, statements built on every call,
`SELECT` then `INSERT` and `UPDATE` per table, and a PostgreSQL engine that pings each
connection it checks out. Kept verbatim (only the asset key is today's) so that one benchmark
run can put the old figures beside the new ones on the same machine and load.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Engine, Table, bindparam, create_engine, insert, select, update

from impactwatch.collector.events import AssetUpdate, Batch, DagRun, TaskTry
from impactwatch.collector.state.merge import RUN_FIELDS, TRY_FIELDS, Changes, merge_run, merge_try
from impactwatch.collector.state.schema import (
    RUN_DELAY,
    RUN_FINISHED,
    TRY_QUEUE_WAIT,
    TRY_SUCCEEDED,
    asset_update_t,
    dag_run_t,
    make_engine,
    task_try_t,
    watermark_t,
)
from impactwatch.collector.state.store import Store, _chunks, _run_from_row, _try_from_row


def old_engine(url: str) -> Engine:
    """The state DB engine as it was: PostgreSQL connections pinged on every checkout."""
    if url.startswith("sqlite"):
        return make_engine(url)
    return create_engine(url, pool_size=4, max_overflow=2, pool_pre_ping=True)


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


class BaselineStore(Store):
    """A `Store` whose `ingest` is the old one (reads and the rest are today's)."""

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
