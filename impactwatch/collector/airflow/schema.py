"""The part of Airflow 3.x's metadata schema the poller reads, declared (not reflected).

Only the columns we read, so extra columns, leftover tables and index differences between a
fresh and an upgraded database do not matter. Timestamps become float Unix seconds whatever the
backend hands back: aware datetimes on PostgreSQL, text on SQLite.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Column, Integer, MetaData, String, Table, Text
from sqlalchemy.engine import Dialect
from sqlalchemy.types import NullType, TypeDecorator

_SQLITE_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


def to_epoch(value: Any) -> float | None:
    """Unix seconds of a DB timestamp; naive values are UTC (Airflow stores UTC)."""
    if value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.timestamp()
    raise TypeError(f"not a timestamp: {value!r}")


class Epoch(TypeDecorator[float]):
    """A timestamp column read as float Unix seconds; binds floats back as the DB's own type."""

    impl = NullType
    cache_ok = True

    def process_result_value(self, value: Any, dialect: Dialect) -> float | None:
        return to_epoch(value)

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        moment = datetime.fromtimestamp(float(value), UTC)
        if dialect.name == "sqlite":
            return moment.strftime(_SQLITE_FORMAT)
        return moment


metadata = MetaData()

dag = Table(
    "dag",
    metadata,
    Column("dag_id", String, primary_key=True),
    Column("is_paused", Boolean),
    Column("is_stale", Boolean),
    Column("owners", String),
)
dag_tag = Table("dag_tag", metadata, Column("name", String), Column("dag_id", String))
dag_run = Table(
    "dag_run",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("dag_id", String),
    Column("run_id", String),
    Column("state", String),
    Column("run_type", String),
    Column("logical_date", Epoch),
    Column("run_after", Epoch),
    Column("queued_at", Epoch),
    Column("start_date", Epoch),
    Column("end_date", Epoch),
    Column("clear_number", Integer),
)
_TI_COLUMNS = (
    "task_id",
    "dag_id",
    "run_id",
    "map_index",
    "try_number",
    "state",
    "start_date",
    "end_date",
    "duration",
    "pool",
    "queue",
    "operator",
    "queued_dttm",
)


def _ti_table(name: str) -> Table:
    types: dict[str, Any] = {"map_index": Integer, "try_number": Integer, "duration": NullType}
    cols = []
    for col in _TI_COLUMNS:
        kind = Epoch if col.endswith(("_date", "_dttm")) else types.get(col, String)
        cols.append(Column(col, kind))
    return Table(name, metadata, *cols)


task_instance = _ti_table("task_instance")
task_instance_history = _ti_table("task_instance_history")
asset = Table(
    "asset",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String),
    Column("uri", String),
    Column("extra", JSON),
)
asset_event = Table(
    "asset_event",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("asset_id", Integer),
    Column("timestamp", Epoch),
    Column("source_dag_id", String),
    Column("source_task_id", String),
    Column("source_run_id", String),
    Column("source_map_index", Integer),
)
task_outlet_asset_reference = Table(
    "task_outlet_asset_reference",
    metadata,
    Column("asset_id", Integer),
    Column("dag_id", String),
    Column("task_id", String),
)
log = Table(
    "log",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("dag_id", String),
    Column("run_id", String),
    Column("event", String),
)
slot_pool = Table(
    "slot_pool",
    metadata,
    Column("pool", String),
    Column("slots", Integer),
    Column("include_deferred", Boolean),
)
import_error = Table("import_error", metadata, Column("id", Integer, primary_key=True))
job = Table(
    "job",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("job_type", String),
    Column("latest_heartbeat", Epoch),
)
deadline = Table(
    "deadline",
    metadata,
    Column("id", String, primary_key=True),
    Column("dagrun_id", Integer),
    Column("deadline_time", Epoch),
    Column("missed", Boolean),
)
xcom = Table(
    "xcom",
    metadata,
    Column("dag_run_id", Integer),
    Column("task_id", String),
    Column("value", Text),
)
