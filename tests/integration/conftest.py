"""Session fixtures: real PostgreSQL, and real Airflow metadata DBs with real DAG runs in them.

Airflow runs from its own virtualenv as a subprocess (impactwatch.devtools.airflow_home).
Without it, the fixtures FAIL (never skip): `make test` builds it.

The populated databases are shared by the whole session: read them, never write to them.
A test that needs to add runs makes its own AirflowHome on its own database.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from impactwatch.devtools.airflow_home import (
    AirflowHome,
    find_airflow_bin,
    populate,
    reader_db_url,
)

try:
    from tests.support.postgres import create_database, drop_database, postgres_server
except ImportError:  # pytest puts tests/integration, not the repo root, on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tests.support.postgres import create_database, drop_database, postgres_server


@pytest.fixture(scope="session")
def pg_base_url() -> str:
    """Base URL (no database) of a PostgreSQL server: the local one, or a throwaway."""
    return postgres_server()


@pytest.fixture(scope="session")
def airflow_bin() -> Path:
    """Airflow's CLI; fails the test with how to get it when it is missing."""
    try:
        return find_airflow_bin()
    except FileNotFoundError as exc:
        missing = str(exc)
    pytest.fail(missing, pytrace=False)


@pytest.fixture(scope="session")
def airflow_pg_home(
    pg_base_url: str, airflow_bin: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AirflowHome]:
    """An Airflow home on a fresh PostgreSQL database, migrated and populated."""
    name = _db_name("populated")
    url = create_database(pg_base_url, name)
    try:
        home = AirflowHome(tmp_path_factory.mktemp("airflow-pg"), url, airflow_bin=airflow_bin)
        populate(home)
        yield home
    finally:
        drop_database(pg_base_url, name)


@pytest.fixture(scope="session")
def airflow_pg_url(airflow_pg_home: AirflowHome) -> str:
    """SQLAlchemy URL (psycopg 3) of the populated PostgreSQL Airflow DB."""
    return reader_db_url(airflow_pg_home.db_url)


@pytest.fixture(scope="session")
def airflow_sqlite_home(airflow_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> AirflowHome:
    """An Airflow home on a fresh SQLite file, migrated and populated."""
    folder = tmp_path_factory.mktemp("airflow-sqlite")
    home = AirflowHome(folder, f"sqlite:///{folder / 'airflow.db'}", airflow_bin=airflow_bin)
    populate(home)
    return home


@pytest.fixture(scope="session")
def airflow_sqlite_url(airflow_sqlite_home: AirflowHome) -> str:
    """SQLAlchemy URL of the populated SQLite Airflow DB."""
    return airflow_sqlite_home.db_url


@pytest.fixture(scope="session")
def airflow_pg_migrated_url(
    pg_base_url: str, airflow_bin: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """SQLAlchemy URL (psycopg 3) of a PostgreSQL Airflow DB built by replaying migrations
    (the "upgraded from 2.x" variant: full instead of partial indexes, leftover tables),
    populated with the standard scenario like the others."""
    name = _db_name("migrated")
    url = create_database(pg_base_url, name)
    try:
        home = AirflowHome(
            tmp_path_factory.mktemp("airflow-pg-migrated"), url, airflow_bin=airflow_bin
        )
        home.reset_migrated()
        populate(home, migrate=False)
        yield reader_db_url(home.db_url)
    finally:
        drop_database(pg_base_url, name)


def _db_name(kind: str) -> str:
    return f"impactwatch_airflow_{kind}_{uuid.uuid4().hex[:8]}"
