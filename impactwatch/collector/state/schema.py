"""Tables of the collector's own state DB (SQLAlchemy Core) and the engine that opens it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Engine,
    Float,
    Index,
    Integer,
    Label,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    make_url,
)

from impactwatch.collector.events import DagRun, TaskTry, field_names
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
    Column("error_type", String(250)),
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
breach_t = Table(  # one row per breach counted: impactwatch_sla_breaches_total by its labels
    "iw_breach",
    metadata,
    Column("k", String(1200), primary_key=True),
    Column("at", Float, nullable=False),
    # the counter's labels; NULL team (rows from before they were kept): the catalog's, on start
    Column("team", String(250)),
    Column("severity", String(30)),
    Column("kind", String(30)),
    Column("dag_id", String(250)),
    Column("dataset", String(250)),
)
series_t = Table(  # counters and histograms as they stand, written with the facts they count
    "iw_series",
    metadata,
    Column("k", String(1400), primary_key=True),  # what the series is: metrics/persisted.py
    Column("dag_id", String(250), nullable=False),
    Column("value", Text, nullable=False),
    Index("iw_series_dag", "dag_id"),
)
xcom_size_t = Table(  # largest XCom of each finished run, for the last 24 hours' gauge
    "iw_xcom_size",
    metadata,
    Column("k", String(520), primary_key=True),
    Column("dag_id", String(250), nullable=False),
    Column("at", Float, nullable=False),
    Column("size", BigInteger, nullable=False),
    Index("iw_xcom_size_at", "at"),
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
HELD = 4  # (runs and tries) last stored while Airflow did not know the DAG: not observed yet


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


# --- records <-> rows (a record's field is the column of that name; `end` is `end_`) -------
def db_column(name: str) -> str:
    return "end_" if name == "end" else name


def record_columns(table: Table, record: type) -> list[Label[Any]]:
    """`table`'s columns of `record`'s fields, labelled by field: `record(**row._mapping)`."""
    return [table.c[db_column(f)].label(f) for f in field_names(record)]


def row_values(table: Table, record: Any) -> dict[str, Any]:
    """`record`'s fields that `table` stores, by column name."""
    values = {db_column(f): getattr(record, f) for f in field_names(type(record))}
    return {name: value for name, value in values.items() if name in table.c}


TRY_RECORD = record_columns(task_try_t, TaskTry)
RUN_RECORD = record_columns(dag_run_t, DagRun)


def task_try(values: Mapping[str, Any]) -> TaskTry:
    """A try from a row of TRY_RECORD (byte counts are stored as floats)."""
    t = TaskTry(**values)
    if t.peak_rss_bytes is not None:
        t.peak_rss_bytes = int(t.peak_rss_bytes)
    if t.requested_memory_bytes is not None:
        t.requested_memory_bytes = int(t.requested_memory_bytes)
    return t


def make_engine(url: str, timeout_ms: int = 30_000) -> Engine:
    """An engine for the state DB. SQLite gets WAL and a busy timeout; PostgreSQL a limit on
    each statement and each lock wait (`timeout_ms`), so a hung write fails instead of holding
    the writer, and no server-side prepared statements: PostgreSQL may keep a generic plan
    made while a table was nearly empty, a full scan per key list (docs/design-notes.md)."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    connect_args: dict[str, Any] = {}
    if make_url(url).get_backend_name() == "postgresql":
        connect_args["options"] = f"-c statement_timeout={timeout_ms} -c lock_timeout={timeout_ms}"
        if make_url(url).get_driver_name() == "psycopg":
            connect_args["prepare_threshold"] = None
    # After a database restart the pooled connections are dead: the ping on checkout replaces
    # them, and a failed poll cycle or intake write is retried by its sender.
    return create_engine(
        url, pool_size=4, max_overflow=2, pool_pre_ping=True, connect_args=connect_args
    )
