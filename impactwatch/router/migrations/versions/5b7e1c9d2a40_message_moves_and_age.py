"""Messages remember when they first wanted delivery (the outbox-age metric) and the channel
Slack refused before they moved to a fallback.

Revision ID: 5b7e1c9d2a40
Revises: 8c4e6b2a5d17
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "5b7e1c9d2a40"
down_revision = "8c4e6b2a5d17"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("rt_message", sa.Column("pending_since", sa.Float()))
    op.add_column("rt_message", sa.Column("moved_from", sa.String(200)))
    op.add_column("rt_message", sa.Column("moved_code", sa.String(100)))
    # Rows waiting now have waited at least since they were last due.
    op.execute("UPDATE rt_message SET pending_since = due_at WHERE due_at IS NOT NULL")


def downgrade() -> None:
    with op.batch_alter_table("rt_message") as batch:
        batch.drop_column("moved_code")
        batch.drop_column("moved_from")
        batch.drop_column("pending_since")
