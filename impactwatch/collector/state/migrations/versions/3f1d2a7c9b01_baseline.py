"""Baseline: the state DB as it was when migrations began; adopts a DB made before them.

Revision ID: 3f1d2a7c9b01
Revises:
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import Column, Float, Index, Integer, MetaData, String, Table

from impactwatch.db_migrations import create_or_adopt

revision = "3f1d2a7c9b01"
down_revision = None
branch_labels = None
depends_on = None

tables = MetaData()
Table(
    "iw_watermark",
    tables,
    Column("name", String(100), primary_key=True),
    Column("value", String(4000), nullable=False),
)
Table(
    "iw_dag_run",
    tables,
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
    Column("clear_number", Integer, nullable=False),
    Column("observed", Integer, nullable=False),
    Index("iw_dag_run_dag_state", "dag_id", "state"),
)
Table(
    "iw_task_try",
    tables,
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
    Column("requested_cpu", Float),  # added before migrations: adopted DBs may lack it
    Column("requested_memory_bytes", Float),  # likewise
    Column("observed", Integer, nullable=False),
    Index("iw_task_try_run", "run_k"),
    Index("iw_task_try_task_state", "dag_id", "task_id", "state"),
)
Table(
    "iw_asset_update",
    tables,
    Column("k", String(1600), primary_key=True),
    Column("uri", String(1500), nullable=False),
    Column("timestamp", Float, nullable=False),
    Column("dag_id", String(250)),
    Column("task_id", String(250)),
    Column("run_id", String(250)),
    Index("iw_asset_update_uri", "uri", "timestamp"),
)
Table(
    "iw_breach",
    tables,
    Column("k", String(1200), primary_key=True),
    Column("at", Float, nullable=False),
)
Table(
    "iw_traced_run",
    tables,
    Column("k", String(520), primary_key=True),
    Column("clear_number", Integer, nullable=False),
    Column("at", Float, nullable=False),
)


def upgrade() -> None:
    create_or_adopt(tables)


def downgrade() -> None:
    tables.drop_all(op.get_bind())
