"""A failed try's error type: `iw_task_try.error_type`, the exception's class name the listener
reports (Airflow's DB does not keep it), served by GET /v1/failures.

Revision ID: 5d2f8a6c1e43
Revises: 7b3e9c1d4f20
Create Date: 2027-01-20
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import Column, String

revision = "5d2f8a6c1e43"
down_revision = "7b3e9c1d4f20"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("iw_task_try") as batch:
        batch.add_column(Column("error_type", String(250)))


def downgrade() -> None:
    with op.batch_alter_table("iw_task_try") as batch:
        batch.drop_column("error_type")
