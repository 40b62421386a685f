"""The store's write path: statements compiled once by SQLAlchemy, run on a DBAPI cursor.

An intake request of two events is written in well under a millisecond of database work, and
SQLAlchemy's execution layer (a transaction begun, a statement looked up in its cache, its
parameters built, a result wrapped) costs several times what SQLite or psycopg spend on it
(bench/README.md). So the hot path compiles each statement once, with SQLAlchemy, for the
engine's dialect, and runs the SQL text with its parameters on a DBAPI cursor of a connection
the store holds. Driver errors are wrapped in SQLAlchemy's exceptions (`DBAPIError.instance`),
as `Connection.execute` would.

- Rows by key take the whole key list as one parameter: `k = ANY(:keys)` (a PostgreSQL
  array) or `k IN (SELECT value FROM json_each(:keys))` (a JSON array in SQLite; its plan
  searches the primary key). One SQL text whatever the number of keys.
- On PostgreSQL these reads are never server-side prepared (`prepare=False`): psycopg prepares
  a statement run five times, and PostgreSQL may then keep a generic plan made while the table
  was nearly empty. For `k IN (...)` that plan was a sequential scan testing every row against
  every key, 15 ms for 100 keys on a 5,000-row table (bench/README.md). Planned each time, the
  key array is a constant: an index scan, or a hashed lookup.
- Writes are `INSERT ... ON CONFLICT (key) DO UPDATE` (or `DO NOTHING` for breaches), one
  statement for new and changed rows, `executemany` for all of them at once (psycopg pipelines
  the rows: one round trip; these are prepared, their plan does not depend on the data).
"""

from __future__ import annotations

import json
from collections import namedtuple
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Dialect, Table, any_, bindparam, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.types import ARRAY, String

from impactwatch.collector.events import AssetUpdate, DagRun, TaskTry
from impactwatch.collector.state.merge import RUN_FIELDS, TRY_FIELDS
from impactwatch.collector.state.schema import (
    asset_update_t,
    breach_t,
    dag_run_t,
    task_try_t,
    watermark_t,
)

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


class Statement:
    """One compiled statement: its SQL text, and how a row of named values becomes its
    parameters (a tuple in bind order for positional drivers, else the mapping itself)."""

    def __init__(
        self, stmt: Any, dialect: Dialect, columns: Sequence[str] | None = None, **run: Any
    ) -> None:
        compiled = stmt.compile(
            dialect=dialect, column_keys=list(columns) if columns is not None else None
        )
        self.sql = str(compiled)
        self.run = run  # extra arguments of cursor.execute (psycopg: prepare=False)
        names = compiled.positiontup
        self.params: Callable[[Mapping[str, Any]], Any]
        if dialect.positional and names:
            order = tuple(names)
            self.params = lambda row: tuple(row[n] for n in order)
        else:
            self.params = lambda row: row

    def execute(self, cursor: Any, row: Mapping[str, Any]) -> Any:
        cursor.execute(self.sql, self.params(row), **self.run)
        return cursor

    def executemany(self, cursor: Any, rows: Iterable[Mapping[str, Any]]) -> None:
        cursor.executemany(self.sql, [self.params(r) for r in rows])


class ByKeys:
    """`SELECT` of rows whose key is in a list, the list one parameter; rows as named tuples."""

    def __init__(self, table: Table, key: str, dialect: Dialect, *columns: str) -> None:
        chosen = [table.c[c] for c in columns] if columns else list(table.c)
        match, self._keys = _keys_match(table.c[key], dialect)
        run = {"prepare": False} if dialect.name == "postgresql" else {}
        self.statement = Statement(select(*chosen).where(match), dialect, **run)
        self.row = namedtuple("Row", [c.name for c in chosen])._make  # type: ignore[misc]

    def __call__(self, cursor: Any, keys: Iterable[str]) -> list[Any]:
        listed = sorted(keys)
        if not listed:
            return []
        self.statement.execute(cursor, {"keys": self._keys(listed)})
        make = self.row
        return [make(r) for r in cursor.fetchall()]


def _keys_match(column: Any, dialect: Dialect) -> tuple[ColumnElement[bool], Callable]:
    """`column` among the keys of one bound list, and how that list is bound."""
    if dialect.name == "postgresql":
        return column == any_(bindparam("keys", type_=ARRAY(String))), list
    values = func.json_each(bindparam("keys", type_=String)).table_valued("value")
    return column.in_(select(values.c.value)), json.dumps


def wrap_error(exc: Exception, sql: str | None, dialect: Dialect, invalidated: bool) -> Exception:
    """A driver error as SQLAlchemy raises it (IntegrityError, OperationalError, ...)."""
    if isinstance(exc, DBAPIError) or not isinstance(exc, dialect.loaded_dbapi.Error):
        return exc
    return DBAPIError.instance(
        sql,
        None,
        exc,
        dialect.loaded_dbapi.Error,
        connection_invalidated=invalidated,
        dialect=dialect,
        hide_parameters=True,
    )


class StateWrites:
    """Prebuilt statements of one dialect, and the rows they take."""

    def __init__(self, dialect: Dialect) -> None:
        insert = _INSERTS.get(dialect.name)
        if insert is None:
            raise _unsupported(dialect.name)

        def upsert(table: Table, key: str, columns: Sequence[str]) -> Statement:
            stmt = insert(table)
            stmt = stmt.on_conflict_do_update(
                index_elements=[table.c[key]], set_={c: stmt.excluded[c] for c in columns}
            )
            return Statement(stmt, dialect, (key, *columns))

        self.dialect = dialect
        self.tries_by_key = ByKeys(task_try_t, "k", dialect)
        self.tries_by_run = ByKeys(task_try_t, "run_k", dialect)
        self.runs_by_key = ByKeys(dag_run_t, "k", dialect)
        self.asset_times = ByKeys(asset_update_t, "k", dialect, "k", "timestamp")
        self.upsert_tries = upsert(task_try_t, "k", TRY_COLUMNS)
        self.upsert_runs = upsert(dag_run_t, "k", RUN_COLUMNS)
        self.upsert_assets = upsert(asset_update_t, "k", ASSET_COLUMNS)
        self.upsert_watermarks = upsert(watermark_t, "name", ("value",))
        self.add_breaches = Statement(
            insert(breach_t).on_conflict_do_nothing(index_elements=[breach_t.c.k]),
            dialect,
            ("k", "at"),
        )

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

    def save_watermarks(self, cursor: Any, watermarks: Mapping[str, str]) -> None:
        rows = [{"name": n, "value": v} for n, v in watermarks.items()]
        if rows:
            self.upsert_watermarks.executemany(cursor, rows)

    def save_breaches(self, cursor: Any, breaches: Mapping[str, float]) -> None:
        """Breaches not yet stored; one already stored keeps its first time."""
        rows = [{"k": k, "at": at} for k, at in breaches.items()]
        if rows:
            self.add_breaches.executemany(cursor, rows)


def _unsupported(name: str) -> UnsupportedStateDB:
    return UnsupportedStateDB(
        f"the state DB must be SQLite or PostgreSQL, not {name!r}: "
        "pass --state-db sqlite:///PATH or postgresql+psycopg://..."
    )
