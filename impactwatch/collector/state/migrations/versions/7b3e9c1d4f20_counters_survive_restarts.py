"""Counters survive restarts: persisted series, breach labels, recent XCom sizes.

`iw_series` holds every counter and histogram series as it stands, written in the transaction
that stores the facts it counts; `iw_breach` gains the labels of the breach counter (filled
from the key for existing rows: kind, severity, and the DAG or data product; the team is
resolved from the catalog on start); `iw_xcom_size` keeps the last day's XCom sizes.

Revision ID: 7b3e9c1d4f20
Revises: 3f1d2a7c9b01
Create Date: 2027-01-10
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    String,
    Text,
    bindparam,
    column,
    select,
    table,
)

revision = "7b3e9c1d4f20"
down_revision = "3f1d2a7c9b01"
branch_labels = None
depends_on = None

LABELS = ("team", "severity", "kind", "dag_id", "dataset")
KINDS = ("freshness", "duration", "deadline")


def labels_of_key(key: str) -> dict[str, str | None] | None:
    """What a breach key written before this revision says of its labels (no team: the
    catalog's on start). Keys: `freshness|<dataset>|<last>|<severity>`,
    `duration|<dag_id>|<run_id>|<severity>`, `deadline|<dag_id>|<due or af:id>|<severity>`."""
    parts = key.split("|")
    if len(parts) < 4 or parts[0] not in KINDS:
        return None
    kind, name, severity = parts[0], parts[1], parts[-1]
    if kind == "freshness":
        return {"severity": severity, "kind": kind, "dag_id": None, "dataset": name}
    return {"severity": severity, "kind": kind, "dag_id": name, "dataset": ""}


def upgrade() -> None:
    with op.batch_alter_table("iw_breach") as batch:
        batch.add_column(Column("team", String(250)))
        batch.add_column(Column("severity", String(30)))
        batch.add_column(Column("kind", String(30)))
        batch.add_column(Column("dag_id", String(250)))
        batch.add_column(Column("dataset", String(250)))
    op.create_table(
        "iw_series",
        Column("k", String(1400), primary_key=True),
        Column("dag_id", String(250), nullable=False),
        Column("value", Text, nullable=False),
        Index("iw_series_dag", "dag_id"),
    )
    op.create_table(
        "iw_xcom_size",
        Column("k", String(520), primary_key=True),
        Column("dag_id", String(250), nullable=False),
        Column("at", Float, nullable=False),
        Column("size", BigInteger, nullable=False),
        Index("iw_xcom_size_at", "at"),
    )
    breach = table("iw_breach", column("k"), *(column(name) for name in LABELS))
    bind = op.get_bind()
    rows = []
    for (key,) in bind.execute(select(breach.c.k)):
        found = labels_of_key(key)
        if found is not None:
            rows.append({"key": key, **{f"new_{n}": v for n, v in found.items()}})
    if rows:
        bind.execute(
            breach.update()
            .where(breach.c.k == bindparam("key"))
            .values({n: bindparam(f"new_{n}") for n in LABELS if n != "team"}),
            rows,
        )


def downgrade() -> None:
    op.drop_table("iw_xcom_size")
    op.drop_table("iw_series")
    with op.batch_alter_table("iw_breach") as batch:
        for name in reversed(LABELS):
            batch.drop_column(name)
