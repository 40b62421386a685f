"""`impactwatch catalog check FILE [--airflow-db URL]`: validate a catalog, print every problem.

Exit codes: 0 valid, 1 problems in the catalog, 2 could not check (e.g. Airflow DB unreachable).
Never prints a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path

from impactwatch.catalog.checks import unowned_note
from impactwatch.catalog.loader import CatalogError, check_catalog, load_catalog
from impactwatch.catalog.model import Catalog

CONNECT_TIMEOUT_SECONDS = 5


class AirflowDbError(Exception):
    """The Airflow metadata DB could not be read; the message is one line for the user."""


def load_catalog_or_exit(path: str | None) -> Catalog:
    """The catalog at `path` (an empty one for None); on problems print them all and exit 1."""
    if path is None:
        return Catalog()
    try:
        return load_catalog(path)
    except CatalogError as exc:
        print(str(exc), file=sys.stderr)
        raise SystemExit(1) from None


def run_check(path: str, airflow_db: str | None = None) -> int:
    """Check the catalog at `path` (and its DAG ids against Airflow's, given `airflow_db`)."""
    try:
        return _run_check(path, airflow_db)
    except Exception as exc:  # the promise is "no traceback, whatever the input"
        print(f"error: could not check {path}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2


def _run_check(path: str, airflow_db: str | None) -> int:
    dag_ids: set[str] | None = None
    if airflow_db:
        try:
            dag_ids = read_airflow_dag_ids(airflow_db)
        except AirflowDbError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    catalog, problems = check_catalog(path, dag_ids)
    if problems or catalog is None:
        for problem in problems:
            print(problem, file=sys.stderr)
        print(f"{_count(len(problems), 'problem')} in {path}", file=sys.stderr)
        return 1
    print(
        f"{path}: OK — {_count(len(catalog.teams), 'team')}, "
        f"{_count(len(catalog.datasets), 'data product')}, "
        f"{_count(len(catalog.pipelines), 'pipeline')}"
    )
    note = unowned_note(catalog)
    if note is not None:
        print(f"{path}: note: {note}")
    return 0


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def read_airflow_dag_ids(url: str) -> set[str]:
    """Every `dag.dag_id` in the Airflow metadata DB at `url` (a SQLAlchemy URL)."""
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception as exc:
        raise AirflowDbError(f"{url!r} is not a database URL: {exc}") from None
    shown = parsed.render_as_string(hide_password=True)
    backend = parsed.get_backend_name()
    connect_args: dict[str, object] = {}
    if backend == "sqlite":
        database = parsed.database or ""
        on_disk = database and database != ":memory:" and not database.startswith("file:")
        if on_disk and not Path(database).is_file():  # sqlite would create an empty file
            raise AirflowDbError(f"cannot read the Airflow DB at {shown}: no such file")
        connect_args["timeout"] = CONNECT_TIMEOUT_SECONDS
    elif backend in ("postgresql", "mysql", "mariadb"):
        connect_args["connect_timeout"] = CONNECT_TIMEOUT_SECONDS
    try:
        engine = sa.create_engine(parsed, connect_args=connect_args)
    except Exception as exc:
        raise AirflowDbError(f"cannot use the Airflow DB URL {shown}: {_one_line(exc)}") from None
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT dag_id FROM dag")).scalars().all()
    except Exception as exc:
        raise AirflowDbError(f"cannot read DAG ids from {shown}: {_one_line(exc)}") from None
    finally:
        engine.dispose()
    return {str(row) for row in rows}


def _one_line(exc: BaseException) -> str:
    """The first line of an exception's message (SQLAlchemy's run to several, with SQL)."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()
    return text[0] if text else type(orig).__name__
