"""Baseline: the router's DB as it was when migrations began; adopts a DB made before them
(older ones lack nullable columns such as rt_alert.group_key, and their indexes).

Revision ID: 8c4e6b2a5d17
Revises:
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import Boolean, Column, Float, Index, Integer, MetaData, String, Table, Text, text

from impactwatch.db_migrations import create_or_adopt

revision = "8c4e6b2a5d17"
down_revision = None
branch_labels = None
depends_on = None

tables = MetaData()
OPEN = text("status = 'open'")

Table(
    "rt_incident",
    tables,
    Column("id", String(40), primary_key=True),
    Column("key", String(600), nullable=False),
    Column("team", String(200), nullable=False),
    Column("status", String(10), nullable=False),
    Column("severity", String(10), nullable=False),
    Column("opened_at", Float, nullable=False),
    Column("resolved_at", Float),
    Column("acked_by", String(100)),
    Column("acked_at", Float),
    Column("snoozed_until", Float),
    Column("snoozed_by", String(100)),
    Column("escalated", Integer, nullable=False),
    Column("escalated_at", Float),
    Column("next_escalation_at", Float),
    Column("merged_into", String(40)),
    Column("rev", Integer, nullable=False),
    # One open incident per key: the database says no to a second, even from another replica.
    Index("rt_incident_open_key", "key", unique=True, sqlite_where=OPEN, postgresql_where=OPEN),
    Index("rt_incident_escalation", "status", "next_escalation_at"),
)
Table(
    "rt_alert",
    tables,
    Column("fingerprint", String(100), primary_key=True),
    Column("alertname", String(300), nullable=False),
    Column("subject_key", String(600), nullable=False),
    Column("team", String(200), nullable=False),
    Column("severity", String(10), nullable=False),
    Column("kind", String(50), nullable=False),
    Column("status", String(10), nullable=False),
    Column("starts_at", Float, nullable=False),
    Column("ends_at", Float),
    Column("labels", Text, nullable=False),
    Column("annotations", Text, nullable=False),
    Column("generator_url", Text, nullable=False),
    Column("owner_note", Text),
    Column("incident_id", String(40)),
    Column("held", Boolean, nullable=False),
    Column("updated_at", Float, nullable=False),
    # Alertmanager's group it last came in: a notification lists all of its group's alerts,
    # so one missing from it is silenced or inhibited there.
    Column("group_key", Text),
    Index("rt_alert_incident", "incident_id"),
    Index("rt_alert_group", "group_key"),
)
Table(
    "rt_message",
    tables,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key", String(300), nullable=False, unique=True),
    Column("incident_id", String(40)),
    Column("role", String(100), nullable=False),
    Column("team", String(200), nullable=False),
    Column("channel", String(200), nullable=False),  # as configured: name or id
    Column("channel_id", String(40)),  # Slack's id, once posted (chat.update needs it)
    Column("thread_of", String(300)),  # key of the message this one replies to
    Column("updatable", Boolean, nullable=False),
    Column("payload", Text),  # fixed rendering (digests); else rendered from the incident
    Column("ts", String(40)),
    Column("wanted_rev", Integer, nullable=False),
    Column("done_rev", Integer, nullable=False),
    Column("shown", String(64)),  # digest of what Slack shows now
    Column("told", Text),  # what the thread has been told (primary messages)
    Column("post_token", String(40)),  # set while a post's outcome is unknown
    Column("post_at", Float),
    Column("reply_token", String(40)),
    Column("reply_at", Float),
    Column("reply_told", Text),
    Column("reply_text", Text),
    Column("due_at", Float),  # NULL: nothing to deliver
    Column("lease_until", Float),
    Column("lease_owner", String(80)),
    Column("tries", Integer, nullable=False),
    Column("last_error", String(300)),
    Column("cancelled", Boolean, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("delivered_at", Float),
    Index("rt_message_due", "due_at"),
    Index("rt_message_incident", "incident_id"),
)
Table(
    "rt_feedback",
    tables,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("incident_id", String(40), nullable=False),
    Column("alertname", String(300), nullable=False),
    Column("team", String(200), nullable=False),
    Column("user_id", String(100), nullable=False),
    Column("at", Float, nullable=False),
    Index("rt_feedback_once", "incident_id", "alertname", "user_id", unique=True),
)
Table(
    "rt_digest_item",
    tables,
    Column("k", String(200), primary_key=True),  # fingerprint @ start
    Column("team", String(200), nullable=False),
    Column("alertname", String(300), nullable=False),
    Column("subject_key", String(600), nullable=False),
    Column("starts_at", Float, nullable=False),
    Column("ended_at", Float),
    Column("became_incident", Boolean, nullable=False),
    Column("digested_at", Float),
    Index("rt_digest_item_team", "team", "digested_at"),
)


def upgrade() -> None:
    create_or_adopt(tables)


def downgrade() -> None:
    tables.drop_all(op.get_bind())
