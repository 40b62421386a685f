"""The store's write path as statements built once: rows by key, and upserts.

Building a SQLAlchemy statement costs more than running it for a small intake request, so each
is built when the store opens and executed with parameters (`IN` lists as expanding bind
parameters). Writes are `INSERT ... ON CONFLICT (key) DO UPDATE` (PostgreSQL and SQLite), one
statement for new and changed rows, executed for all of them at once (psycopg pipelines the
rows: one round trip).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from sqlalchemy import Connection, Row, Select, Table, bindparam, select
from sqlalchemy.dialects import postgresql, sqlite

from impactwatch.collector.events import AssetUpdate, DagRun, TaskTry
from impactwatch.collector.merge import RUN_FIELDS, TRY_FIELDS
from impactwatch.collector.state_schema import (
    asset_update_t,
    dag_run_t,
    task_try_t,
    watermark_t,
)

CHUNK = 400  # keys per IN list
_INSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


def db_col(name: str) -> str:
    return "end_" if name == "end" else name


TRY_COLUMNS = (
    "run_k",
    "dag_id",
    "run_id",
    "task_id",
    "map_index",
    "try_number",
    *(db_col(f) for f in TRY_FIELDS),
    "observed",
)
RUN_COLUMNS = ("dag_id", "run_id", *(db_col(f) for f in RUN_FIELDS), "observed")
ASSET_COLUMNS = ("uri", "timestamp", "dag_id", "task_id", "run_id")


class UnsupportedStateDB(ValueError):
    """The state DB is neither SQLite nor PostgreSQL."""


def _keys_match(column: Any) -> Any:
    """`column IN (:keys)`, the list rendered when executed."""
    return column.in_(bindparam("keys", expanding=True))


class StateWrites:
    """Prebuilt statements of one dialect, and the rows they take."""

    def __init__(self, dialect: str) -> None:
        insert = _INSERTS.get(dialect)
        if insert is None:
            raise UnsupportedStateDB(
                f"the state DB must be SQLite or PostgreSQL, not {dialect!r}: "
                "pass --state-db sqlite:///PATH or postgresql+psycopg://..."
            )

        def upsert(table: Table, key: str, columns: Iterable[str]) -> Any:
            stmt = insert(table)
            return stmt.on_conflict_do_update(
                index_elements=[table.c[key]], set_={c: stmt.excluded[c] for c in columns}
            )

        self.tries_by_key = select(task_try_t).where(_keys_match(task_try_t.c.k))
        self.tries_by_run = select(task_try_t).where(_keys_match(task_try_t.c.run_k))
        self.runs_by_key = select(dag_run_t).where(_keys_match(dag_run_t.c.k))
        self.asset_times = select(asset_update_t.c.k, asset_update_t.c.timestamp).where(
            _keys_match(asset_update_t.c.k)
        )
        self.upsert_tries = upsert(task_try_t, "k", TRY_COLUMNS)
        self.upsert_runs = upsert(dag_run_t, "k", RUN_COLUMNS)
        self.upsert_assets = upsert(asset_update_t, "k", ASSET_COLUMNS)
        self.upsert_watermarks = upsert(watermark_t, "name", ("value",))

    @staticmethod
    def rows(conn: Connection, stmt: Select[Any], keys: Iterable[str]) -> Iterator[Row[Any]]:
        """`stmt` for every key, `CHUNK` keys a statement."""
        ordered = sorted(keys)
        for i in range(0, len(ordered), CHUNK):
            yield from conn.execute(stmt, {"keys": ordered[i : i + CHUNK]})

    @staticmethod
    def try_row(t: TaskTry, observed: int) -> dict[str, Any]:
        row = {
            "k": t.key,
            "run_k": t.run_key,
            "dag_id": t.dag_id,
            "run_id": t.run_id,
            "task_id": t.task_id,
            "map_index": t.map_index,
            "try_number": t.try_number,
            "observed": observed,
        }
        row.update((db_col(f), getattr(t, f)) for f in TRY_FIELDS)
        return row

    @staticmethod
    def run_row(r: DagRun, observed: int) -> dict[str, Any]:
        row = {"k": r.key, "dag_id": r.dag_id, "run_id": r.run_id, "observed": observed}
        row.update((db_col(f), getattr(r, f)) for f in RUN_FIELDS)
        return row

    @staticmethod
    def asset_row(key: str, a: AssetUpdate) -> dict[str, Any]:
        return {
            "k": key,
            "uri": a.uri,
            "timestamp": a.timestamp,
            "dag_id": a.dag_id,
            "task_id": a.task_id,
            "run_id": a.run_id,
        }

    def save_watermarks(self, conn: Connection, watermarks: Mapping[str, str]) -> None:
        rows = [{"name": n, "value": v} for n, v in watermarks.items()]
        if rows:
            conn.execute(self.upsert_watermarks, rows)
