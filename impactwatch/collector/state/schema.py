"""Tables of the collector's own state DB (SQLAlchemy Core) and the engine that opens it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Column,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    event,
)

from impactwatch.db_migrations import Migrations

metadata = MetaData()

watermark_t = Table(
    "iw_watermark",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("value", String(4000), nullable=False),
)
dag_run_t = Table(
    "iw_dag_run",
    metadata,
    Column("k", String(520), primary_key=True),
    Column("dag_id", String(250), nullable=False),
    Column("run_id", String(250), nullable=False),
    Column("state", String(30)),
    Column("run_type", String(50)),
    Column("logical_date", Float),
    Column("run_after", Float),
    Column("queued_at", Float),
    Column("start", Float),
    Column("end_", Float),
    Column("clear_number", Integer, nullable=False, default=0),
    Column("observed", Integer, nullable=False, default=0),
    Index("iw_dag_run_dag_state", "dag_id", "state"),
)
task_try_t = Table(
    "iw_task_try",
    metadata,
    Column("k", String(1100), primary_key=True),
    Column("run_k", String(520), nullable=False),
    Column("dag_id", String(250), nullable=False),
    Column("run_id", String(250), nullable=False),
    Column("task_id", String(250), nullable=False),
    Column("map_index", Integer, nullable=False),
    Column("try_number", Integer, nullable=False),
    Column("state", String(30)),
    Column("start", Float),
    Column("end_", Float),
    Column("queued", Float),
    Column("duration", Float),
    Column("pool", String(256)),
    Column("queue", String(256)),
    Column("operator", String(1000)),
    Column("cpu_seconds", Float),
    Column("peak_rss_bytes", Float),
    Column("requested_cpu", Float),
    Column("requested_memory_bytes", Float),
    Column("observed", Integer, nullable=False, default=0),
    Index("iw_task_try_run", "run_k"),
    Index("iw_task_try_task_state", "dag_id", "task_id", "state"),
)
asset_update_t = Table(
    "iw_asset_update",
    metadata,
    Column("k", String(1600), primary_key=True),
    Column("uri", String(1500), nullable=False),
    Column("timestamp", Float, nullable=False),
    Column("dag_id", String(250)),
    Column("task_id", String(250)),
    Column("run_id", String(250)),
    Index("iw_asset_update_uri", "uri", "timestamp"),
)
breach_t = Table(
    "iw_breach",
    metadata,
    Column("k", String(1200), primary_key=True),
    Column("at", Float, nullable=False),
)
traced_run_t = Table(  # runs whose trace was sent (OpenTelemetry), per execution
    "iw_traced_run",
    metadata,
    Column("k", String(520), primary_key=True),
    Column("clear_number", Integer, nullable=False),
    Column("at", Float, nullable=False),
)

# `observed` bits: each fact is turned into metrics once.
RUN_FINISHED = 1
RUN_DELAY = 2
TRY_QUEUE_WAIT = 1
TRY_SUCCEEDED = 2


MIGRATIONS = Migrations(
    scripts="impactwatch.collector.state:migrations",
    version_table="impactwatch_collector_alembic_version",
    table_prefix="iw_",
    metadata=metadata,
    what="state DB",
    upgrade_command="impactwatch db upgrade --state-db URL",
)


def create_or_upgrade(engine: Engine) -> None:
    """Bring the state DB to this version's schema (Alembic; docs/design-notes.md)."""
    MIGRATIONS.upgrade(engine)


def make_engine(url: str) -> Engine:
    """An engine for the state DB; SQLite gets WAL and a busy timeout."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    # No ping on checkout (a round trip per transaction): after a database restart the first
    # use of a dead pooled connection fails and SQLAlchemy drops the pool; the store's writer
    # retries once, a failed poll cycle is retried by the service.
    return create_engine(url, pool_size=4, max_overflow=2)
