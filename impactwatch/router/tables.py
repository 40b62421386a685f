"""The router's state DB schema (SQLAlchemy Core): incidents, alerts, messages (the outbox),
feedback and digest items. SQLite file by default, PostgreSQL for production and HA pairs."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    text,
)

from impactwatch.db_migrations import Migrations

metadata = MetaData()
OPEN = text("status = 'open'")

incident_t = Table(
    "rt_incident",
    metadata,
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
    Column("escalated", Integer, nullable=False, default=0),
    Column("escalated_at", Float),
    Column("next_escalation_at", Float),
    Column("merged_into", String(40)),
    Column("rev", Integer, nullable=False, default=0),
    # One open incident per key: the database says no to a second, even from another replica.
    Index("rt_incident_open_key", "key", unique=True, sqlite_where=OPEN, postgresql_where=OPEN),
    Index("rt_incident_escalation", "status", "next_escalation_at"),
)
alert_t = Table(
    "rt_alert",
    metadata,
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
    Column("generator_url", Text, nullable=False, default=""),
    Column("owner_note", Text),
    Column("incident_id", String(40)),
    Column("held", Boolean, nullable=False, default=False),
    Column("updated_at", Float, nullable=False),
    # Alertmanager's group it last came in: a notification lists all of its group's alerts,
    # so one missing from it is silenced or inhibited there.
    Column("group_key", Text),
    Index("rt_alert_incident", "incident_id"),
    Index("rt_alert_group", "group_key"),
)
message_t = Table(
    "rt_message",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key", String(300), nullable=False, unique=True),
    Column("incident_id", String(40)),
    Column("role", String(100), nullable=False),
    Column("team", String(200), nullable=False),
    Column("channel", String(200), nullable=False),  # as configured: name or id
    Column("channel_id", String(40)),  # Slack's id, once posted (chat.update needs it)
    Column("thread_of", String(300)),  # key of the message this one replies to
    Column("updatable", Boolean, nullable=False, default=True),
    Column("payload", Text),  # fixed rendering (digests); else rendered from the incident
    Column("ts", String(40)),
    Column("wanted_rev", Integer, nullable=False, default=0),
    Column("done_rev", Integer, nullable=False, default=-1),
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
    Column("tries", Integer, nullable=False, default=0),
    Column("last_error", String(300)),
    Column("cancelled", Boolean, nullable=False, default=False),
    Column("created_at", Float, nullable=False),
    Column("delivered_at", Float),
    Column("pending_since", Float),  # when it first wanted delivery since last delivered
    Column("moved_from", String(200)),  # the channel Slack refused for good (then a fallback)
    Column("moved_code", String(100)),  # Slack's error code for it
    Index("rt_message_due", "due_at"),
    Index("rt_message_incident", "incident_id"),
)
feedback_t = Table(
    "rt_feedback",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("incident_id", String(40), nullable=False),
    Column("alertname", String(300), nullable=False),
    Column("team", String(200), nullable=False),
    Column("user_id", String(100), nullable=False),
    Column("at", Float, nullable=False),
    Index("rt_feedback_once", "incident_id", "alertname", "user_id", unique=True),
)
digest_item_t = Table(
    "rt_digest_item",
    metadata,
    Column("k", String(200), primary_key=True),  # fingerprint @ start
    Column("team", String(200), nullable=False),
    Column("alertname", String(300), nullable=False),
    Column("subject_key", String(600), nullable=False),
    Column("starts_at", Float, nullable=False),
    Column("ended_at", Float),
    Column("became_incident", Boolean, nullable=False, default=False),
    Column("digested_at", Float),
    Index("rt_digest_item_team", "team", "digested_at"),
)

MIGRATIONS = Migrations(
    scripts="impactwatch.router:migrations",
    version_table="impactwatch_router_alembic_version",
    table_prefix="rt_",
    metadata=metadata,
    what="router DB",
    upgrade_command="impactwatch db upgrade --router-db URL",
)


def make_engine(url: str) -> Engine:
    """SQLite (WAL, one writer at a time) or PostgreSQL (small pool, autocommit)."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            # pysqlite's own transaction handling would defer BEGIN; we issue it ourselves.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            # Writers take SQLite's write lock up front: no deadlock between two upgraders.
            write = conn.get_execution_options().get("iw_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine
    # No pre-ping: it costs a round trip per transaction on the webhook's path. After a database
    # restart the first statement fails, SQLAlchemy drops the pool, and the caller retries
    # (Alertmanager on a 503, the worker and timers on their next turn). Autocommit: the store
    # sends BEGIN itself where it wants a transaction (`RouterStore.decide`), and nothing is
    # switched on each checkout.
    return create_engine(
        url, pool_size=12, max_overflow=8, pool_recycle=1800, isolation_level="AUTOCOMMIT"
    )


def create_or_upgrade(engine: Engine) -> None:
    """Bring the router's DB to this version's schema (Alembic; docs/design-notes.md). SQLite:
    the upgrade takes the write lock up front (`iw_write`), so two upgraders queue."""
    MIGRATIONS.upgrade(engine.execution_options(iw_write=True))
