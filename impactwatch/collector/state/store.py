"""The collector's own state DB: idempotent event store, watermarks, counted breaches.

SQLite file by default, PostgreSQL by URL (SQLAlchemy Core). Both sources write the same keys;
`write` merges what is new, tells which facts are seen for the first time (so metrics observe
them once), and saves the poller's watermarks in the same transaction, so a restart neither
recounts nor misses anything. It is called by one thread, the collector's writer
(`service.py`), with every batch queued since its last write: one transaction for all of them,
each batch alone again if a row of one is refused.

- Rows by key take the whole key list as one parameter: `k = ANY(:keys)` (a PostgreSQL array)
  or an expanding `k IN (...)` on SQLite.
- Writes are `INSERT ... ON CONFLICT (key) DO UPDATE` (`DO NOTHING` for breaches), one
  executemany for new and changed rows together.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Table,
    any_,
    bindparam,
    delete,
    func,
    select,
    tuple_,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.types import ARRAY, String

from impactwatch.collector.events import AssetUpdate, Batch, DagRun, TaskTry
from impactwatch.collector.failures import FailureReport, failure_report
from impactwatch.collector.state.merge import Changes, merge_assets, merge_runs, merge_tries
from impactwatch.collector.state.schema import (
    HELD,
    RUN_RECORD,
    TRY_RECORD,
    asset_update_t,
    breach_t,
    create_or_upgrade,
    dag_run_t,
    make_engine,
    row_values,
    series_t,
    task_try,
    task_try_t,
    traced_run_t,
    watermark_t,
    xcom_size_t,
)

__all__ = [
    "Breach",
    "Changes",
    "Counts",
    "Stage",
    "Store",
    "Summary",
    "UnsupportedStateDB",
    "make_engine",
    "task_try_t",
]

log = logging.getLogger(__name__)
OPEN_STATES = ("queued", "running")  # what the poller tracks until it ends (or is deleted)
_INSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}

# One write of the group: a batch, and the watermarks saved with it (the poller's).
Write = tuple[Batch, Mapping[str, str] | None]


@dataclass(frozen=True)
class Breach:
    """A breach counted once: when, and the labels of impactwatch_sla_breaches_total."""

    at: float
    team: str
    severity: str
    kind: str
    dag_id: str
    dataset: str


@dataclass
class Counts:
    """Counters as they stand after a write, saved in the transaction of the facts they count:
    series (key -> (dag_id, value), `metrics/persisted.py`) and the breaches newly counted."""

    series: dict[str, tuple[str, str]] = field(default_factory=dict)
    breaches: dict[str, Breach] = field(default_factory=dict)


# Called inside a write's transaction with what it saw for the first time: the counts to save
# with it, and what to run once it is committed (the metrics state takes them then).
Stage = Callable[[list[Changes]], tuple[Counts, Callable[[], None]]]


class UnsupportedStateDB(ValueError):
    """The state DB is neither SQLite nor PostgreSQL."""


@dataclass
class Summary:
    """What the metrics state needs back after a restart."""

    last_success: dict[str, float]
    last_failure: dict[str, float]
    task_success: dict[tuple[str, str], float]
    asset_updates: dict[str, float]
    breaches: set[str]
    open_runs: list[DagRun]


class Store:
    """Idempotent event store. `write` and `save_breaches` are called by one thread only."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        insert = _INSERTS.get(engine.dialect.name)
        if insert is None:
            raise UnsupportedStateDB(
                f"the state DB must be SQLite or PostgreSQL, not {engine.dialect.name!r}: "
                "pass --state-db sqlite:///PATH or postgresql+psycopg://..."
            )
        create_or_upgrade(engine)
        self.postgresql = engine.dialect.name == "postgresql"
        self._upsert_tries = self._upsert(task_try_t)
        self._upsert_runs = self._upsert(dag_run_t)
        self._upsert_assets = self._upsert(asset_update_t)
        self._upsert_watermarks = self._upsert(watermark_t)
        self._upsert_traced = self._upsert(traced_run_t)
        self._upsert_series = self._upsert(series_t)
        self._upsert_xcom = self._upsert(xcom_size_t)
        self._add_breaches = insert(breach_t).on_conflict_do_nothing(index_elements=[breach_t.c.k])
        self._tries_by_key = select(*TRY_RECORD, task_try_t.c.observed).where(
            self._among(task_try_t.c.k)
        )
        self._tries_by_run = select(task_try_t.c.run_k, *TRY_RECORD).where(
            self._among(task_try_t.c.run_k)
        )
        self._runs_by_key = select(*RUN_RECORD, dag_run_t.c.observed).where(
            self._among(dag_run_t.c.k)
        )
        self._asset_times = select(asset_update_t.c.k, asset_update_t.c.timestamp).where(
            self._among(asset_update_t.c.k)
        )

    def _upsert(self, table: Table) -> Callable[[Connection, list[dict[str, Any]]], Any]:
        """INSERT ... ON CONFLICT (primary key) DO UPDATE every other column, for many rows:
        an executemany on SQLite; on PostgreSQL one statement over an array per column
        (`unnest`), planned once per call: nothing is server-side prepared there (make_engine),
        and an executemany would be parsed and planned row by row."""
        key = table.primary_key.columns[0]
        if self.postgresql:
            arrays = [func.unnest(bindparam(c.name, type_=ARRAY(c.type))) for c in table.c]
            stmt = postgresql.insert(table).from_select(list(table.c), select(*arrays))
        else:
            stmt = sqlite.insert(table)
        changed = {c.name: stmt.excluded[c.name] for c in table.c if c is not key}
        upsert = stmt.on_conflict_do_update(index_elements=[key], set_=changed)
        if not self.postgresql:
            return lambda conn, rows: conn.execute(upsert, rows)
        names = [c.name for c in table.c]
        return lambda conn, rows: conn.execute(upsert, {n: [r.get(n) for r in rows] for n in names})

    def _among(self, column: ColumnElement[str]) -> ColumnElement[bool]:
        """`column` in the list bound as `keys`: one array parameter on PostgreSQL (one plan
        whatever the number of keys), an expanding IN on SQLite."""
        if self.postgresql:
            return column == any_(bindparam("keys", type_=ARRAY(String)))
        return column.in_(bindparam("keys", expanding=True))

    def close(self) -> None:
        self.engine.dispose()

    # --- watermarks -------------------------------------------------------------------------
    def watermarks(self) -> dict[str, str]:
        with self.engine.connect() as conn:
            return {r.name: r.value for r in conn.execute(select(watermark_t))}

    # --- writes -----------------------------------------------------------------------------
    def write(self, writes: list[Write], stage: Stage | None = None) -> list[Changes | Exception]:
        """Merge the batches and save their watermarks in one transaction; each one's changes,
        or its error. With `stage`, the counts it makes of the changes are saved in the same
        transaction, and its follow-up runs once that is committed. A row the DB refuses fails
        only its own batch: then each batch is written again in a transaction of its own."""
        try:
            return list(self._commit(writes, stage))
        except (IntegrityError, DataError) as exc:
            if len(writes) == 1:
                return [exc]
        except Exception as exc:  # the DB is down, or timed out: every batch failed
            return [exc] * len(writes)
        out: list[Changes | Exception] = []
        for one in writes:
            try:
                out += self._commit([one], stage)
            except Exception as exc:
                out.append(exc)
        return out

    def ingest(self, batch: Batch, watermarks: Mapping[str, str] | None = None) -> Changes:
        """`write` of one batch; raises its error."""
        (got,) = self.write([(batch, watermarks)])
        if isinstance(got, Exception):
            raise got
        return got

    def save_breaches(self, breaches: Mapping[str, Breach]) -> None:
        """Breaches not yet stored; one already stored keeps its first time."""
        if breaches:
            with self.engine.begin() as conn:
                self._save_breaches(conn, breaches)

    def _save_breaches(self, conn: Connection, breaches: Mapping[str, Breach]) -> None:
        if breaches:
            rows = [{"k": k, **asdict(b)} for k, b in breaches.items()]
            conn.execute(self._add_breaches, rows)

    def _save_counts(self, conn: Connection, counts: Counts) -> None:
        if counts.series:
            rows = [{"k": k, "dag_id": d, "value": v} for k, (d, v) in counts.series.items()]
            self._upsert_series(conn, rows)
        self._save_breaches(conn, counts.breaches)

    def save_counts(self, counts: Counts) -> None:
        """Counts made outside a write (e.g. costs priced again on start)."""
        with self.engine.begin() as conn:
            self._save_counts(conn, counts)

    def forget_series(self, dag_ids: Collection[str]) -> None:
        """The series of DAGs Airflow no longer has (the metrics state drops them too)."""
        if dag_ids:
            with self.engine.begin() as conn:
                conn.execute(delete(series_t).where(series_t.c.dag_id.in_(sorted(dag_ids))))

    def save_xcom_sizes(self, sizes: Iterable[tuple[str, str, float, int]], since: float) -> None:
        """(run key, dag_id, written at, largest XCom) of finished runs; older than `since`
        are deleted."""
        rows = {k: {"k": k, "dag_id": d, "at": at, "size": n} for k, d, at, n in sizes}
        with self.engine.begin() as conn:
            if rows:
                self._upsert_xcom(conn, list(rows.values()))
            conn.execute(delete(xcom_size_t).where(xcom_size_t.c.at < since))

    def _rows(self, conn: Connection, query: Any, keys: Collection[str]) -> list[Any]:
        return list(conn.execute(query, {"keys": sorted(keys)})) if keys else []

    def _commit(self, writes: list[Write], stage: Stage | None = None) -> list[Changes]:
        changes = [Changes() for _ in writes]
        batches = [batch for batch, _ in writes]
        with self.engine.begin() as conn:
            held = [b.held_dags for b in batches]
            self._merge_tries(conn, [b.task_tries for b in batches], changes, held)
            self._merge_runs(conn, [b.dag_runs for b in batches], changes, held)
            self._merge_assets(conn, [b.assets for b in batches], changes)
            watermarks: dict[str, str] = {}
            for _, saved in writes:  # later ones win
                watermarks.update(saved or {})
            if watermarks:
                rows = [{"name": n, "value": v} for n, v in watermarks.items()]
                self._upsert_watermarks(conn, rows)
            committed: Callable[[], None] | None = None
            if stage is not None:
                counts, committed = stage(changes)
                self._save_counts(conn, counts)
        if committed is not None:
            try:
                committed()
            except Exception:  # a bug: what is committed stays so (a restart restores it)
                log.exception("the metrics state could not take a committed write")
        return changes

    def _merge_tries(
        self,
        conn: Connection,
        batches: list[list[TaskTry]],
        changes: list[Changes],
        held: list[frozenset[str]],
    ) -> None:
        keys = {t.key for tries in batches for t in tries}
        known = {}
        for row in self._rows(conn, self._tries_by_key, keys):
            values = dict(row._mapping)
            observed = values.pop("observed")
            t = task_try(values)
            known[t.key] = (t, observed)
        dirty = merge_tries(known, batches, changes, held)
        if dirty:
            self._upsert_tries(conn, [_try_row(t, o) for t, o in dirty.values()])

    def _merge_runs(
        self,
        conn: Connection,
        batches: list[list[DagRun]],
        changes: list[Changes],
        held: list[frozenset[str]],
    ) -> None:
        keys = {r.key for runs in batches for r in runs}
        known = {}
        for row in self._rows(conn, self._runs_by_key, keys):
            values = dict(row._mapping)
            observed = values.pop("observed")
            r = DagRun(**values)
            known[r.key] = (r, observed)
        dirty, finished = merge_runs(known, batches, changes, held)
        if dirty:
            self._upsert_runs(conn, [_run_row(r, o) for r, o in dirty.values()])
        ended = {r.key for done in finished for r in done}
        if ended:  # their tries as stored now, this group's included
            by_run: dict[str, list[TaskTry]] = {k: [] for k in ended}
            for row in self._rows(conn, self._tries_by_run, ended):
                values = dict(row._mapping)
                by_run[values.pop("run_k")].append(task_try(values))
            for seen, done in zip(changes, finished, strict=True):
                seen.finished_runs.extend((r, by_run[r.key]) for r in done)

    def _merge_assets(
        self, conn: Connection, batches: list[list[AssetUpdate]], changes: list[Changes]
    ) -> None:
        keys = {a.key for assets in batches for a in assets}
        stamps = {row.k: row.timestamp for row in self._rows(conn, self._asset_times, keys)}
        new = merge_assets(stamps, batches, changes)
        if new:
            rows = [{"k": k, **row_values(asset_update_t, a)} for k, a in new.items()]
            self._upsert_assets(conn, rows)

    # --- restart ----------------------------------------------------------------------------
    def summary(self, tasks: Collection[tuple[str, str]] | None = None) -> Summary:
        """Last successes, dataset updates, counted breaches and open runs, for a restart; the
        last success of the (dag_id, task_id) in `tasks` only, when given (those producing a
        data product: a read of a few index entries instead of every try)."""
        last_success: dict[str, float] = {}
        last_failure: dict[str, float] = {}
        with self.engine.connect() as conn:
            q = (
                select(dag_run_t.c.dag_id, dag_run_t.c.state, func.max(dag_run_t.c.end_))
                .where(dag_run_t.c.state.in_(("success", "failed")), _observed(dag_run_t))
                .group_by(dag_run_t.c.dag_id, dag_run_t.c.state)
            )
            for dag_id, state, end in conn.execute(q):
                if end is not None:
                    (last_success if state == "success" else last_failure)[dag_id] = end
            q = (
                select(task_try_t.c.dag_id, task_try_t.c.task_id, func.max(task_try_t.c.end_))
                .where(task_try_t.c.state == "success", _observed(task_try_t))
                .group_by(task_try_t.c.dag_id, task_try_t.c.task_id)
            )
            task_success: dict[tuple[str, str], float] = {}
            if tasks is None:
                task_success = {(d, t): e for d, t, e in conn.execute(q) if e is not None}
            wanted = sorted(tasks or ())
            for i in range(0, len(wanted), 500):
                pairs = tuple_(task_try_t.c.dag_id, task_try_t.c.task_id).in_(wanted[i : i + 500])
                for d, t, e in conn.execute(q.where(pairs)):
                    if e is not None:
                        task_success[(d, t)] = e
            q = select(asset_update_t.c.uri, func.max(asset_update_t.c.timestamp)).group_by(
                asset_update_t.c.uri
            )
            asset_updates = {u: ts for u, ts in conn.execute(q)}
            breaches = set(conn.scalars(select(breach_t.c.k)))
            q = select(*RUN_RECORD).where(dag_run_t.c.state.in_(OPEN_STATES))
            open_runs = [DagRun(**r._mapping) for r in conn.execute(q)]
        return Summary(last_success, last_failure, task_success, asset_updates, breaches, open_runs)

    def history(
        self, since: float, chunk: int = 500
    ) -> Iterator[tuple[list[tuple[DagRun, list[TaskTry]]], list[AssetUpdate]]]:
        """Finished runs that ended from `since` on, oldest first, with their tries, in chunks
        of `chunk` runs; then the asset updates from `since` on (the last chunk's). For the
        learned baselines on start (collector/baselines): streamed, so memory stays flat."""
        runs = (
            select(*RUN_RECORD)
            .where(
                dag_run_t.c.state.in_(("success", "failed")),
                dag_run_t.c.end_ >= since,
                _observed(dag_run_t),
            )
            .order_by(dag_run_t.c.end_)
        )
        assets = (
            select(asset_update_t.c.uri, asset_update_t.c.timestamp)
            .where(asset_update_t.c.timestamp >= since)
            .order_by(asset_update_t.c.timestamp)
        )
        with self.engine.connect() as conn, self.engine.connect() as reader:
            result = conn.execution_options(stream_results=True, yield_per=chunk).execute(runs)
            for rows in result.partitions(chunk):
                page = [DagRun(**r._mapping) for r in rows]
                by_run: dict[str, list[TaskTry]] = {r.key: [] for r in page}
                for row in self._rows(reader, self._tries_by_run, by_run):
                    values = dict(row._mapping)
                    by_run[values.pop("run_k")].append(task_try(values))
                yield [(r, by_run[r.key]) for r in page], []
            updates = [AssetUpdate(uri=u, timestamp=ts) for u, ts in reader.execute(assets)]
        yield [], updates

    def series(self) -> list[tuple[str, str]]:
        """Every stored counter and histogram series: (key, value)."""
        with self.engine.connect() as conn:
            return [(k, v) for k, v in conn.execute(select(series_t.c.k, series_t.c.value))]

    def breach_counts(self) -> list[tuple[tuple[str | None, ...], int]]:
        """Breaches counted, by (team, severity, kind, dag_id, dataset); None where a row from
        before the labels were kept does not say (team; dag_id of a freshness breach)."""
        b = breach_t.c
        labels = (b.team, b.severity, b.kind, b.dag_id, b.dataset)
        q = select(*labels, func.count()).where(b.kind.is_not(None)).group_by(*labels)
        with self.engine.connect() as conn:
            return [(tuple(row[:5]), int(row[5])) for row in conn.execute(q)]

    def xcom_sizes(self, since: float) -> list[tuple[str, float, int]]:
        """(dag_id, written at, largest XCom) of runs written from `since` on, oldest first."""
        x = xcom_size_t.c
        q = select(x.dag_id, x.at, x.size).where(x.at >= since).order_by(x.at)
        with self.engine.connect() as conn:
            return [(d, at, int(n)) for d, at, n in conn.execute(q)]

    def open_run_keys(self) -> set[tuple[str, str]]:
        with self.engine.connect() as conn:
            q = select(dag_run_t.c.dag_id, dag_run_t.c.run_id).where(
                dag_run_t.c.state.in_(OPEN_STATES)
            )
            return {(d, r) for d, r in conn.execute(q)}

    # --- failures (GET /v1/failures) -----------------------------------------------------------
    def latest_failure(self, dag_id: str) -> FailureReport | None:
        """The DAG's latest failed run with its failed tasks, or None when none is stored.
        Reads by the (dag_id, state) and run indexes: a few rows however long the history."""
        r = dag_run_t.c
        mine = (r.dag_id == dag_id, _observed(dag_run_t))
        with self.engine.connect() as conn:
            row = conn.execute(
                select(*RUN_RECORD)
                .where(*mine, r.state == "failed")
                .order_by(r.end_.desc().nulls_last(), r.start.desc())
                .limit(1)
            ).first()
            if row is None:
                return None
            run = DagRun(**row._mapping)
            last_success = conn.scalar(select(func.max(r.end_)).where(*mine, r.state == "success"))
            since = select(func.count(), func.min(r.start)).where(*mine, r.state == "failed")
            if last_success is not None:
                since = since.where(r.end_ > last_success)
            count, first_start = conn.execute(since).one()
            tries = [
                task_try(dict(t._mapping))
                for t in conn.execute(select(*TRY_RECORD).where(task_try_t.c.run_k == run.key))
            ]
        return failure_report(
            run,
            tries,
            last_success=last_success,
            failing_since=first_start,
            failed_runs=int(count or 0),
        )

    # --- traces (OpenTelemetry) -------------------------------------------------------------
    def untraced_runs(self, runs: list[DagRun]) -> list[DagRun]:
        """The runs whose current execution (`clear_number`) has no trace sent yet."""
        q = select(traced_run_t.c.k, traced_run_t.c.clear_number).where(
            self._among(traced_run_t.c.k)
        )
        with self.engine.connect() as conn:
            done = dict(self._rows(conn, q, {r.key for r in runs}))
        return [r for r in runs if done.get(r.key, -1) < r.clear_number]

    def run_tries(self, run_keys: list[str]) -> dict[str, list[TaskTry]]:
        """Every stored task try of these runs (both sources merged), by run key."""
        tries: dict[str, list[TaskTry]] = {k: [] for k in run_keys}
        with self.engine.connect() as conn:
            for row in self._rows(conn, self._tries_by_run, run_keys):
                values = dict(row._mapping)
                tries[values.pop("run_k")].append(task_try(values))
        return tries

    def mark_traced(self, runs: Iterable[DagRun], at: float) -> None:
        """Remember that these runs' traces were sent, so no restart sends them again."""
        rows = {r.key: {"k": r.key, "clear_number": r.clear_number, "at": at} for r in runs}
        if rows:
            with self.engine.begin() as conn:
                self._upsert_traced(conn, list(rows.values()))


def _observed(table: Table) -> ColumnElement[bool]:
    """Rows not HELD (stored while Airflow did not know their DAG): only those reach metrics."""
    return table.c.observed.op("&")(HELD) == 0


def _try_row(t: TaskTry, observed: int) -> dict[str, Any]:
    return {"k": t.key, "run_k": t.run_key, "observed": observed, **row_values(task_try_t, t)}


def _run_row(r: DagRun, observed: int) -> dict[str, Any]:
    return {"k": r.key, "observed": observed, **row_values(dag_run_t, r)}
