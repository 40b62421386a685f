"""Incremental, read-only poller of the Airflow 3.x metadata DB (SQLAlchemy Core).

Every read goes through an index, and a steady-state cycle costs what changed, not the size of
history (Airflow 3.3 has no index on task_instance or dag_run update/end times):

- new DAG runs: `dag_run.id > watermark` (primary key; ids are monotonic). Ids seen skipped
  (a transaction that commits late) are re-checked by id for a grace period.
- runs in flight: `state = 'running'` and `state = 'queued'` (the partial/state indexes); a run
  that leaves that set is re-read once by `(dag_id, run_id)` (unique) and its task instances,
  retries (`task_instance_history`) and XComs are read by `(dag_id, run_id)` / `dag_run_id`.
- user actions (clear, mark state) arrive through `log.id > watermark`; the runs they name are
  re-read.
- dataset updates: `asset_event.id > watermark`.
- platform: pools, import errors, scheduler heartbeat (`job (job_type, latest_heartbeat)`), missed
  Airflow Deadline Alerts (`deadline (missed, deadline_time)`), all small.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Text,
    and_,
    cast,
    func,
    select,
    tuple_,
)

from impactwatch.catalog.airflow_merge import AssetDeclaration, DagDeclaration
from impactwatch.collector.airflow import schema as af
from impactwatch.collector.airflow.db import IdCursor, make_airflow_engine
from impactwatch.collector.airflow.declarations import read_declarations
from impactwatch.collector.events import AssetUpdate, Batch, DagRun, TaskTry, field_names

__all__ = ["PollResult", "Poller", "make_airflow_engine"]

log = logging.getLogger(__name__)

ACTIVE_STATES = ("running", "queued")
CHUNK = 500
RUNS_PER_CYCLE = 500  # a backfill goes on over several cycles, so memory stays flat


@dataclass
class PollResult:
    """One cycle's reading: events for the store, snapshots for the metrics state."""

    batch: Batch
    watermarks: dict[str, str]
    running: dict[tuple[str, str], float]
    pools: dict[str, dict[str, int]]
    import_errors: int | None
    heartbeat: float | None
    missed_deadlines: dict[str, list[tuple[str, float]]]
    xcom_sizes: list[tuple[str, float, int]]
    rows_read: dict[str, int]
    caught_up: bool = True


# Airflow's names for the fields of our records that it spells differently.
_RENAMED = {"start_date": "start", "end_date": "end", "queued_dttm": "queued"}


def _record(record: type, row: Any) -> dict[str, Any]:
    """The values of `record`'s fields in an Airflow row, by field name."""
    values = {_RENAMED.get(k, k): v for k, v in row._mapping.items()}
    return {f: values[f] for f in field_names(record) if f in values}


def _run_from_row(row: Any) -> DagRun:
    run = DagRun(**_record(DagRun, row))
    run.clear_number = run.clear_number or 0
    return run


def _try_from_row(row: Any) -> TaskTry:
    t = TaskTry(**_record(TaskTry, row))
    t.duration = float(t.duration) if t.duration is not None else None
    return t


_RUN_COLS = (
    af.dag_run.c.id,
    af.dag_run.c.dag_id,
    af.dag_run.c.run_id,
    af.dag_run.c.state,
    af.dag_run.c.run_type,
    af.dag_run.c.logical_date,
    af.dag_run.c.run_after,
    af.dag_run.c.queued_at,
    af.dag_run.c.start_date,
    af.dag_run.c.end_date,
    af.dag_run.c.clear_number,
)


class Poller:
    """Reads what changed since the watermarks; one `poll()` is one cycle."""

    def __init__(
        self,
        engine: Engine,
        watermarks: dict[str, str],
        open_runs: set[tuple[str, str]],
        *,
        backfill_days: float = 7.0,
        clock: Callable[[], float] = time.time,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.backfill_days = backfill_days
        self.progress = progress
        self.runs = IdCursor.load(watermarks.get("dag_run"))
        self.assets = IdCursor.load(watermarks.get("asset_event"))
        self.logs = IdCursor.load(watermarks.get("log"))
        self.tracked: set[tuple[str, str]] = set(open_runs)
        self.rows: dict[str, int] = {}
        self._backfill_assets = False
        self._caught_up = True
        self._seen: dict[tuple[str, str, str, int], tuple[Any, ...]] = {}

    # --- helpers ----------------------------------------------------------------------------
    def _read(self, conn: Connection, table: str, stmt: Any) -> list[Any]:
        rows = list(conn.execute(stmt))
        self.rows[table] = self.rows.get(table, 0) + len(rows)
        return rows

    def _runs_by_key(self, conn: Connection, keys: Iterable[tuple[str, str]]) -> list[Any]:
        keys = sorted(set(keys))
        out: list[Any] = []
        for i in range(0, len(keys), CHUNK):
            part = keys[i : i + CHUNK]
            stmt = select(*_RUN_COLS).where(
                tuple_(af.dag_run.c.dag_id, af.dag_run.c.run_id).in_(part)
            )
            out.extend(self._read(conn, "dag_run", stmt))
        return out

    def _task_rows(self, conn: Connection, table: Any, keys: list[tuple[str, str]]) -> list[Any]:
        out: list[Any] = []
        cols = [table.c[name] for name in af._TI_COLUMNS]
        for i in range(0, len(keys), CHUNK):
            part = keys[i : i + CHUNK]
            stmt = select(*cols).where(tuple_(table.c.dag_id, table.c.run_id).in_(part))
            out.extend(self._read(conn, table.name, stmt))
        return out

    def _xcom_sizes(self, conn: Connection, runs: list[Any]) -> list[tuple[str, float, int]]:
        ids = {r.id: r for r in runs}
        if not ids:
            return []
        length = (
            func.octet_length(cast(af.xcom.c.value, Text))
            if conn.dialect.name == "postgresql"
            else func.length(af.xcom.c.value)
        )
        sizes: list[tuple[str, float, int]] = []
        id_list = sorted(ids)
        for i in range(0, len(id_list), CHUNK):
            part = id_list[i : i + CHUNK]
            stmt = (
                select(af.xcom.c.dag_run_id, func.max(length))
                .where(af.xcom.c.dag_run_id.in_(part))
                .group_by(af.xcom.c.dag_run_id)
            )
            for run_pk, size in self._read(conn, "xcom", stmt):
                run = ids[run_pk]
                if size is not None:
                    sizes.append((run.dag_id, run.end_date or self.clock(), int(size)))
        return sizes

    # --- the cycle --------------------------------------------------------------------------
    def poll(self) -> PollResult:
        now = self.clock()
        self.rows = {}
        with self.engine.connect() as conn:
            if self.runs is None or self.assets is None or self.logs is None:
                self._start_cursors(conn, now)
            new_rows = self._new_runs(conn, now)
            active_rows = self._active_runs(conn)
            active_keys = {(r.dag_id, r.run_id) for r in active_rows}
            hinted = self._log_hints(conn, now) - active_keys
            left = (self.tracked - active_keys) | hinted
            new_keys = {(r.dag_id, r.run_id) for r in new_rows}
            reread = self._runs_by_key(conn, left - new_keys) if left - new_keys else []
            by_key = {(r.dag_id, r.run_id): r for r in [*new_rows, *reread, *active_rows]}
            finished = [r for k, r in by_key.items() if k not in active_keys]
            gone = left - set(by_key)  # deleted from Airflow
            ti_keys = sorted(set(by_key))
            current = [_try_from_row(r) for r in self._task_rows(conn, af.task_instance, ti_keys)]
            done_keys = sorted((r.dag_id, r.run_id) for r in finished)
            history = (
                self._task_rows(conn, af.task_instance_history, done_keys) if done_keys else []
            )
            xcoms = self._xcom_sizes(conn, finished)
            assets = self._new_assets(conn, now)
            pools = self._pools(conn, current)
            tries = [_try_from_row(r) for r in history] + self._changed(current, active_keys)
            import_errors = conn.execute(select(func.count()).select_from(af.import_error)).scalar()
            heartbeat = conn.execute(
                select(func.max(af.job.c.latest_heartbeat)).where(
                    af.job.c.job_type == "SchedulerJob"
                )
            ).scalar()
            missed = self._missed_deadlines(conn, now)
        self.tracked = active_keys
        runs = [_run_from_row(r) for r in by_key.values()]
        runs += [DagRun(dag_id=d, run_id=r, state="deleted") for d, r in gone]
        running = {(r.dag_id, r.run_id): r.start_date or r.queued_at or now for r in active_rows}
        return PollResult(
            batch=Batch(task_tries=tries, dag_runs=runs, assets=assets),
            watermarks={
                "dag_run": self.runs.dump(),
                "asset_event": self.assets.dump(),
                "log": self.logs.dump(),
            },
            running=running,
            pools=pools,
            import_errors=int(import_errors or 0),
            heartbeat=af.to_epoch(heartbeat),
            missed_deadlines=missed,
            xcom_sizes=xcoms,
            rows_read=dict(self.rows),
            caught_up=self._caught_up,
        )

    def _changed(self, tries: list[TaskTry], active: set[tuple[str, str]]) -> list[TaskTry]:
        """Tries that happened (try_number > 0, or a final state) and changed since last seen.

        Runs in flight are re-read every cycle; handing the store only what moved keeps a
        steady-state cycle proportional to the changes, not to the tasks in flight.
        """
        out = []
        for t in tries:
            if t.try_number == 0 and not t.terminal:
                continue  # not queued yet: no try exists
            key = (t.dag_id, t.run_id, t.task_id, t.map_index)
            mark = (t.try_number, t.state, t.start, t.end, t.queued, t.duration, t.pool)
            if self._seen.get(key) != mark:
                self._seen[key] = mark
                out.append(t)
        self._seen = {k: v for k, v in self._seen.items() if (k[0], k[1]) in active}
        return out

    def _start_cursors(self, conn: Connection, now: float) -> None:
        """First start: runs from `backfill_days` ago on; assets and logs from now on."""
        since = now - self.backfill_days * 86400
        first_id = conn.execute(
            select(func.min(af.dag_run.c.id)).where(af.dag_run.c.run_after >= since)
        ).scalar()
        max_run = conn.execute(select(func.max(af.dag_run.c.id))).scalar() or 0
        start = (first_id - 1) if first_id is not None else max_run
        self.runs = IdCursor(high=start, floor=max_run)
        max_asset = conn.execute(select(func.max(af.asset_event.c.id))).scalar() or 0
        self.assets = IdCursor(high=max_asset, floor=max_asset)
        max_log = conn.execute(select(func.max(af.log.c.id))).scalar() or 0
        self.logs = IdCursor(high=max_log, floor=max_log)
        self._backfill_assets = True
        log.info(
            "first start: backfilling dag runs %d..%d (%.0f days)",
            start + 1,
            max_run,
            self.backfill_days,
        )

    def _new_runs(self, conn: Connection, now: float) -> list[Any]:
        """New runs by id, at most RUNS_PER_CYCLE; `_caught_up` says whether more wait."""
        assert self.runs is not None
        out: list[Any] = []
        if self.runs.gaps:
            stmt = select(*_RUN_COLS).where(af.dag_run.c.id.in_(sorted(self.runs.gaps)))
            found = self._read(conn, "dag_run", stmt)
            self.runs.advance((r.id for r in found), now)
            out.extend(found)
        while True:
            if self.progress is not None and self.runs.high < self.runs.floor:
                self.progress(self.runs.high, self.runs.floor)
            stmt = (
                select(*_RUN_COLS)
                .where(af.dag_run.c.id > self.runs.high)
                .order_by(af.dag_run.c.id)
                .limit(CHUNK)
            )
            rows = self._read(conn, "dag_run", stmt)
            self.runs.advance((r.id for r in rows), now)
            out.extend(rows)
            self._caught_up = len(rows) < CHUNK
            if self.progress is not None and self.runs.high <= self.runs.floor:
                self.progress(self.runs.high, self.runs.floor)
            if self._caught_up or len(out) >= RUNS_PER_CYCLE:
                return out

    def _active_runs(self, conn: Connection) -> list[Any]:
        rows: list[Any] = []
        for state in ACTIVE_STATES:  # one query per state: each matches its partial index
            stmt = select(*_RUN_COLS).where(af.dag_run.c.state == state)
            rows.extend(self._read(conn, "dag_run", stmt))
        return rows

    def _log_hints(self, conn: Connection, now: float) -> set[tuple[str, str]]:
        assert self.logs is not None
        stmt = (
            select(af.log.c.id, af.log.c.dag_id, af.log.c.run_id)
            .where(af.log.c.id > self.logs.high)
            .order_by(af.log.c.id)
            .limit(5 * CHUNK)
        )
        rows = self._read(conn, "log", stmt)
        self.logs.advance((r.id for r in rows), now)
        return {(r.dag_id, r.run_id) for r in rows if r.dag_id and r.run_id}

    def _new_assets(self, conn: Connection, now: float) -> list[AssetUpdate]:
        assert self.assets is not None
        out: list[AssetUpdate] = []
        cols = (
            af.asset_event.c.id,
            af.asset.c.uri,
            af.asset_event.c.timestamp,
            af.asset_event.c.source_dag_id,
            af.asset_event.c.source_task_id,
            af.asset_event.c.source_run_id,
            af.asset_event.c.source_map_index,
        )
        base = select(*cols).join(af.asset, af.asset.c.id == af.asset_event.c.asset_id)
        rows: list[Any] = []
        if self._backfill_assets:
            # History before the watermark: each asset's latest event only (freshness needs no
            # more), with its producing task, so the listener's copy of it is the same event.
            self._backfill_assets = False
            latest = select(func.max(af.asset_event.c.id)).group_by(af.asset_event.c.asset_id)
            rows += self._read(
                conn,
                "asset_event",
                base.where(
                    af.asset_event.c.id.in_(latest.scalar_subquery()),
                    af.asset_event.c.id <= self.assets.high,
                ),
            )
        if self.assets.gaps:
            rows += self._read(
                conn, "asset_event", base.where(af.asset_event.c.id.in_(sorted(self.assets.gaps)))
            )
        while True:
            stmt = (
                base.where(af.asset_event.c.id > self.assets.high)
                .order_by(af.asset_event.c.id)
                .limit(CHUNK)
            )
            chunk = self._read(conn, "asset_event", stmt)
            rows += chunk
            self.assets.advance((r.id for r in chunk), now)
            if len(chunk) < CHUNK:
                break
        self.assets.advance((r.id for r in rows), now)
        out.extend(
            AssetUpdate(
                uri=r.uri,
                timestamp=r.timestamp,
                dag_id=r.source_dag_id,
                task_id=r.source_task_id,
                run_id=r.source_run_id,
                map_index=r.source_map_index,
            )
            for r in rows
        )
        return out

    def _pools(self, conn: Connection, tries: list[TaskTry]) -> dict[str, dict[str, int]]:
        """Slots per pool; occupancy from the tasks of runs in flight (only they hold slots)."""
        pools: dict[str, dict[str, int]] = {}
        deferred_counts: dict[str, bool] = {}
        for row in self._read(conn, "slot_pool", select(af.slot_pool)):
            pools[row.pool] = {"total": int(row.slots), "running": 0, "queued": 0, "deferred": 0}
            deferred_counts[row.pool] = bool(row.include_deferred)
        latest: dict[tuple[str, str, str, int], TaskTry] = {}
        for t in tries:
            k = (t.dag_id, t.run_id, t.task_id, t.map_index)
            if k not in latest or t.try_number >= latest[k].try_number:
                latest[k] = t
        for t in latest.values():
            if t.pool in pools and t.state in ("running", "queued", "deferred"):
                pools[t.pool][t.state] += 1
        for name, s in pools.items():
            used = s["running"] + s["queued"] + (s["deferred"] if deferred_counts[name] else 0)
            s["open"] = max(s["total"] - used, 0) if s["total"] >= 0 else 0
            del s["deferred"]
        return pools

    def _missed_deadlines(self, conn: Connection, now: float) -> dict[str, list[tuple[str, float]]]:
        stmt = (
            select(
                af.deadline.c.id,
                af.deadline.c.deadline_time,
                af.dag_run.c.dag_id,
                af.dag_run.c.state,
            )
            .join(af.dag_run, af.dag_run.c.id == af.deadline.c.dagrun_id)
            .where(
                and_(af.deadline.c.missed.is_(True), af.deadline.c.deadline_time >= now - 2 * 86400)
            )
        )
        out: dict[str, list[tuple[str, float]]] = {}
        for row in self._read(conn, "deadline", stmt):
            if row.state != "success":
                out.setdefault(row.dag_id, []).append((str(row.id), row.deadline_time))
        return out

    # --- declarations for the catalog (run every minute or so, not every cycle) -------------
    def declarations(self) -> tuple[list[DagDeclaration], list[AssetDeclaration]]:
        with self.engine.connect() as conn:
            return read_declarations(conn)
