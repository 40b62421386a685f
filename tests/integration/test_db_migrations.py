"""Alembic migrations of both state DBs (collector, router) on real SQLite and PostgreSQL: from
empty, from a DB made by the code before Alembic (with rows), from an older one lacking columns,
twice, from two processes at once; migrate_on_start off; `impactwatch db`."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, MetaData, create_engine, inspect, select

from impactwatch.cli import main
from impactwatch.collector.state import schema
from impactwatch.db_migrations import SchemaOutOfDate
from impactwatch.router import tables
from impactwatch.router.service import RouterService
from impactwatch.router.settings import RouterSettings
from tests.support.postgres import create_database, drop_database
from tests.unit.test_router_support import catalog

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "pre_alembic"  # made by commit 4478007
DBS = {"collector": schema, "router": tables}
# Columns an earlier version lacked, and the index that came with one (what the code before
# Alembic added at start).
ADDED = {
    "collector": {"iw_task_try": ("requested_cpu", "requested_memory_bytes")},
    "router": {"rt_alert": ("group_key",)},
}
ADDED_INDEX = {"router": ("rt_alert", "rt_alert_group")}
# Columns later revisions add (router 5b7e1c9d2a40): new in every upgraded row.
LATER: dict[str, dict[str, tuple[str, ...]]] = {
    "router": {"rt_message": ("pending_since", "moved_from", "moved_code")}
}


def without_later(found: dict[str, list[dict[str, Any]]], db: str) -> dict[str, list[dict]]:
    """`found` without the columns later revisions added, after checking their values: a
    message waiting for delivery has waited since it was due; none has moved."""
    for table, columns in LATER.get(db, {}).items():
        for row in found.get(table, []):
            if "pending_since" in columns:
                assert row["pending_since"] == row["due_at"]
            assert all(row[c] is None for c in columns if c != "pending_since")
    return {
        table: [
            {k: v for k, v in r.items() if k not in LATER.get(db, {}).get(table, ())} for r in rows
        ]
        for table, rows in found.items()
    }


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state.db'}"
        return
    base = request.getfixturevalue("pg_base_url")
    name = f"impactwatch_migrate_{uuid.uuid4().hex[:8]}"
    url = create_database(base, name)
    try:
        yield url.replace("postgresql://", "postgresql+psycopg://")
    finally:
        drop_database(base, name)


def load_pre_alembic(url: str, db: str) -> None:
    """The DB as the code before Alembic left it, with its rows."""
    dialect = "sqlite" if url.startswith("sqlite") else "postgresql"
    script = (FIXTURES / f"{db}.{dialect}.sql").read_text()
    if dialect == "sqlite":
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            conn.executescript(script)
    else:
        with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute(script.encode())


def contents(engine: Engine) -> dict[str, list[dict[str, Any]]]:
    reflected = MetaData()
    reflected.reflect(engine)
    with engine.connect() as conn:
        return {
            name: sorted((dict(row._mapping) for row in conn.execute(select(table))), key=repr)
            for name, table in reflected.tables.items()
            if "alembic" not in name
        }


def kept(
    after: dict[str, list[dict[str, Any]]], before: dict[str, list[dict[str, Any]]]
) -> dict[str, list[dict[str, Any]]]:
    """`after`'s rows of the tables and columns `before` had (revisions since add some)."""
    out = {}
    for name, rows in before.items():
        columns = set(rows[0]) if rows else set()
        out[name] = sorted(
            ({k: v for k, v in row.items() if k in columns} for row in after[name]), key=repr
        )
    return out


def differences(module: ModuleType, engine: Engine) -> list[Any]:
    m = module.MIGRATIONS
    with engine.connect() as conn:
        opts = {"version_table": m.version_table, "include_name": m.owns}
        return compare_metadata(MigrationContext.configure(conn, opts=opts), m.metadata)


def version_rows(module: ModuleType, engine: Engine) -> list[str]:
    with engine.connect() as conn:
        table = MetaData()
        table.reflect(conn, only=[module.MIGRATIONS.version_table])
        return list(conn.execute(select(*table.tables.values())).scalars())


@pytest.mark.parametrize("db", DBS)
def test_an_empty_db_is_upgraded_to_head_matching_the_metadata(url: str, db: str) -> None:
    module = DBS[db]
    engine = module.make_engine(url)
    try:
        assert module.MIGRATIONS.current(engine) is None
        module.create_or_upgrade(engine)
        assert module.MIGRATIONS.current(engine) == module.MIGRATIONS.head()
        # A schema change without a revision fails here.
        assert differences(module, engine) == []
        module.create_or_upgrade(engine)  # twice: nothing to do
        assert version_rows(module, engine) == [module.MIGRATIONS.head()]
        assert differences(module, engine) == []
    finally:
        engine.dispose()


def test_both_dbs_share_one_database_each_with_its_own_version_table(url: str) -> None:
    engines = [(module, module.make_engine(url)) for module in DBS.values()]
    try:
        for module, engine in engines:
            module.create_or_upgrade(engine)
        for module, engine in engines:
            assert version_rows(module, engine) == [module.MIGRATIONS.head()]
            assert differences(module, engine) == []  # the other DB's tables are not its own
        names = set(inspect(engines[0][1]).get_table_names())
        assert {"impactwatch_collector_alembic_version", "impactwatch_router_alembic_version"} <= (
            names
        )
    finally:
        for _module, engine in engines:
            engine.dispose()


@pytest.mark.parametrize("db", DBS)
def test_a_db_made_before_alembic_keeps_its_rows_and_records_the_revision(
    url: str, db: str
) -> None:
    module = DBS[db]
    load_pre_alembic(url, db)
    engine = module.make_engine(url)
    try:
        before = contents(engine)
        assert all(before.values()), "the fixture has rows in every table"
        assert module.MIGRATIONS.current(engine) is None
        module.create_or_upgrade(engine)
        assert kept(without_later(contents(engine), db), before) == before
        assert version_rows(module, engine) == [module.MIGRATIONS.head()]
        assert differences(module, engine) == []
        module.create_or_upgrade(engine)
        assert kept(without_later(contents(engine), db), before) == before
    finally:
        engine.dispose()


@pytest.mark.parametrize("db", DBS)
def test_an_older_db_lacking_added_columns_gets_them(url: str, db: str) -> None:
    module = DBS[db]
    load_pre_alembic(url, db)
    engine = create_engine(url)
    with engine.begin() as conn:  # as a version before those columns left it
        if db in ADDED_INDEX:
            conn.exec_driver_sql(f"DROP INDEX {ADDED_INDEX[db][1]}")
        for table, columns in ADDED[db].items():
            for column in columns:
                conn.exec_driver_sql(f"ALTER TABLE {table} DROP COLUMN {column}")
    before = contents(engine)
    engine.dispose()
    engine = module.make_engine(url)
    try:
        module.create_or_upgrade(engine)
        for table, columns in ADDED[db].items():
            have = {c["name"] for c in inspect(engine).get_columns(table)}
            assert set(columns) <= have
        if db in ADDED_INDEX:
            table, index = ADDED_INDEX[db]
            assert index in {i["name"] for i in inspect(engine).get_indexes(table)}
        after = without_later(contents(engine), db)
        for table, rows in before.items():  # every row, every value it had; new columns NULL
            added = ADDED[db].get(table, ())
            assert all(r[k] is None for r in after[table] for k in added)
            assert kept(after, before)[table] == rows
            assert all(r[c] is None for r in after[table] for c in added)
        assert differences(module, engine) == []
    finally:
        engine.dispose()


def test_processes_upgrading_at_once_on_postgresql(pg_base_url: str) -> None:
    name = f"impactwatch_migrate_{uuid.uuid4().hex[:8]}"
    url = create_database(pg_base_url, name).replace("postgresql://", "postgresql+psycopg://")
    command = [sys.executable, "-m", "impactwatch.cli", "db", "upgrade", "--state-db", url]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    try:
        processes = [
            subprocess.Popen([*command, "--router-db", url], env=env, stderr=subprocess.PIPE)
            for _ in range(6)
        ]
        errors = [p.communicate(timeout=120)[1].decode() for p in processes]
        assert [p.returncode for p in processes] == [0] * 6, errors
        for module in DBS.values():
            engine = module.make_engine(url)
            assert version_rows(module, engine) == [module.MIGRATIONS.head()]
            assert differences(module, engine) == []
            engine.dispose()
    finally:
        drop_database(pg_base_url, name)


def test_threads_upgrading_at_once(url: str) -> None:
    """Alembic's globals are shared by a process's threads: its upgrades queue."""
    engines = [module.make_engine(url) for module in DBS.values() for _ in range(3)]
    start = threading.Barrier(len(engines))
    errors: list[BaseException] = []

    def upgrade(module: ModuleType, engine: Engine) -> None:
        start.wait()
        try:
            module.create_or_upgrade(engine)
        except BaseException as exc:
            errors.append(exc)

    modules = [module for module in DBS.values() for _ in range(3)]
    threads = [
        threading.Thread(target=upgrade, args=pair) for pair in zip(modules, engines, strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    for module, engine in zip(modules, engines, strict=True):
        assert version_rows(module, engine) == [module.MIGRATIONS.head()]
        engine.dispose()


def test_migrate_on_start_off_refuses_an_old_state_db(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    load_pre_alembic(url, "collector")
    monkeypatch.setenv("IMPACTWATCH_MIGRATE_ON_START", "false")
    airflow = f"sqlite:///{tmp_path / 'airflow.db'}"
    assert main(["collector", "--airflow-db", airflow, "--state-db", url, "--once"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    head = schema.MIGRATIONS.head()
    assert line == (
        "impactwatch collector: cannot start: SchemaOutOfDate: state DB at revision none, this"
        f" version needs {head}: run `impactwatch db upgrade --state-db URL`"
    )
    engine = schema.make_engine(url)
    try:
        assert schema.MIGRATIONS.current(engine) is None  # left as it was
    finally:
        engine.dispose()


def test_router_with_migrate_on_start_off_refuses_an_old_db_and_takes_a_current_one(
    url: str, tmp_path: Path
) -> None:
    load_pre_alembic(url, "router")
    settings = RouterSettings(
        state_db=url, migrate_on_start=False, jsonl_path=str(tmp_path / "m.jsonl")
    )
    head = tables.MIGRATIONS.head()
    with pytest.raises(SchemaOutOfDate) as refused:
        RouterService(settings, catalog())
    assert str(refused.value) == (
        f"router DB at revision none, this version needs {head}:"
        " run `impactwatch db upgrade --router-db URL`"
    )
    assert main(["db", "upgrade", "--router-db", url]) == 0
    service = RouterService(settings, catalog())
    service.close()


def test_db_commands_upgrade_and_show_the_revision(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    collector, router = schema.MIGRATIONS.head(), tables.MIGRATIONS.head()
    load_pre_alembic(url, "collector")
    assert main(["db", "current", "--state-db", url, "--router-db", url]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"state DB (--state-db): at none, head {collector}",
        f"router DB (--router-db): at none, head {router}",
    ]
    assert main(["db", "upgrade", "--state-db", url, "--router-db", url]) == 0
    assert main(["db", "current", "--state-db", url, "--router-db", url]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-2:] == [
        f"state DB (--state-db): at {collector}",
        f"router DB (--router-db): at {router}",
    ]


def test_db_commands_fail_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "upgrade", "--router-db", "postgresql+psycopg://nobody@127.0.0.1:1/x"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("impactwatch db upgrade: router DB (--router-db): connection failed")
    assert main(["db", "current"]) == 2
    assert capsys.readouterr().err.strip() == (
        "impactwatch db current: give --state-db and/or --router-db"
    )
    newer = f"sqlite:///{tmp_path / 'newer.db'}"  # a newer version's revision
    assert main(["db", "upgrade", "--state-db", newer]) == 0
    engine = create_engine(newer)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE impactwatch_collector_alembic_version SET version_num = 'f00'")
    engine.dispose()
    capsys.readouterr()
    assert main(["db", "upgrade", "--state-db", newer]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == (
        "impactwatch db upgrade: state DB (--state-db): state DB at revision f00, which this"
        " version does not know (a newer version's?); this version needs"
        f" {schema.MIGRATIONS.head()}"
    )


def test_breach_rows_get_their_labels_from_their_keys(url: str) -> None:
    """The revision that keeps the breach counter's labels fills them for existing rows from
    the key (kind, severity, DAG or data product); the team is left to the catalog."""
    engine = schema.make_engine(url)
    try:
        with engine.connect() as conn, conn.begin():
            command.upgrade(schema.MIGRATIONS.config(conn), "3f1d2a7c9b01")
            conn.exec_driver_sql(
                "INSERT INTO iw_breach (k, at) VALUES ('duration|etl|manual__1|critical', 1.0),"
                " ('freshness|fx_rates|1700000000.000|warning', 2.0),"
                " ('deadline|etl|af:42|warning', 3.0), ('etl|deadline', 4.0)"
            )
        schema.create_or_upgrade(engine)
        with engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT k, team, severity, kind, dag_id, dataset FROM iw_breach ORDER BY at"
            ).all()
        assert [tuple(r) for r in rows] == [
            ("duration|etl|manual__1|critical", None, "critical", "duration", "etl", ""),
            ("freshness|fx_rates|1700000000.000|warning", None, "warning", "freshness", None,
             "fx_rates"),
            ("deadline|etl|af:42|warning", None, "warning", "deadline", "etl", ""),
            ("etl|deadline", None, None, None, None, None),  # an older key: not counted again
        ]  # fmt: skip
    finally:
        engine.dispose()
