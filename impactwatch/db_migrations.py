"""Alembic, run from code, for impactwatch's two state DBs (the collector's and the router's).

Each DB keeps its revisions in its own package (`<package>/migrations/versions/`) and its own
version table, so both can live in one PostgreSQL database. No alembic.ini: the scripts folder is
found by package name. How to add a revision: docs/design-notes.md, "Schema changes".
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass

from sqlalchemy import Column, Connection, Engine, MetaData, create_engine, func, inspect, select

# Alembic's own INFO lines (plugins set up at import, "Context impl ...") say nothing to
# operators; `Migrations.upgrade` logs what it changed.
logging.getLogger("alembic").setLevel(logging.WARNING)

from alembic import command, context, op  # noqa: E402
from alembic.config import Config  # noqa: E402
from alembic.runtime.migration import MigrationContext  # noqa: E402
from alembic.script import ScriptDirectory  # noqa: E402

log = logging.getLogger(__name__)
# Alembic's `context` and `op` are module globals: one upgrade at a time in a process.
_one_at_a_time = threading.Lock()


class SchemaOutOfDate(RuntimeError):
    """The DB is not at the revision this version of impactwatch needs."""


@dataclass(frozen=True)
class Migrations:
    """The Alembic scripts of one state DB and how to run them."""

    scripts: str  # package resource of the scripts folder, e.g. "impactwatch.router:migrations"
    version_table: str
    table_prefix: str  # the DB's tables start with it; others (the other DB's) are not compared
    metadata: MetaData  # what the head revision must match (tests/integration/test_db_migrations.py)
    what: str  # "state DB", for messages
    upgrade_command: str  # what an operator runs, for messages

    def config(self, connection: Connection | None = None) -> Config:
        cfg = Config()
        cfg.set_main_option("script_location", self.scripts)
        cfg.attributes["connection"] = connection
        return cfg

    def head(self) -> str:
        head = ScriptDirectory.from_config(self.config()).get_current_head()
        assert head is not None, f"{self.scripts}: no revisions"
        return head

    def current(self, engine: Engine) -> str | None:
        """The DB's revision; None for an empty DB or one made before migrations."""
        with engine.connect() as conn:
            return self._current(conn)

    def _current(self, conn: Connection) -> str | None:
        migration = MigrationContext.configure(conn, opts={"version_table": self.version_table})
        return migration.get_current_revision()

    def upgrade(self, engine: Engine) -> None:
        """Upgrade to head, in one transaction. On PostgreSQL a transaction-level advisory lock
        makes a second process starting at the same time wait, then find nothing to do."""
        with _one_at_a_time, engine.connect() as conn:
            if conn.dialect.name == "postgresql":  # the engine may be in autocommit
                conn = conn.execution_options(isolation_level="READ COMMITTED")
            with conn.begin():
                if conn.dialect.name == "postgresql":
                    conn.execute(select(func.pg_advisory_xact_lock(self._lock_id())))
                current, head = self._current(conn), self.head()
                if current == head:
                    return
                known = {
                    s.revision for s in ScriptDirectory.from_config(self.config()).walk_revisions()
                }
                if current is not None and current not in known:
                    raise SchemaOutOfDate(
                        f"{self.what} at revision {current}, which this version does not know"
                        f" (a newer version's?); this version needs {head}"
                    )
                command.upgrade(self.config(conn), "head")
        log.info("%s upgraded from revision %s to %s", self.what, current or "none", head)

    def require_head(self, url_or_engine: str | Engine) -> None:
        """Raise SchemaOutOfDate (one line, for operators) unless the DB is at head."""
        engine = create_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
        try:
            current, head = self.current(engine), self.head()
        finally:
            if isinstance(url_or_engine, str):
                engine.dispose()
        if current != head:
            raise SchemaOutOfDate(
                f"{self.what} at revision {current or 'none'}, this version needs {head}:"
                f" run `{self.upgrade_command}`"
            )

    def run_env(self) -> None:
        """The body of the scripts folder's env.py: run on the caller's connection."""
        connection: Connection = context.config.attributes["connection"]
        context.configure(
            connection=connection,
            target_metadata=self.metadata,
            version_table=self.version_table,
            render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters by copying
            include_name=self.owns,
        )
        with context.begin_transaction():
            context.run_migrations()

    def owns(self, name: str | None, kind: str, _parent: object = None) -> bool:
        """Whether autogenerate compares this object: tables of this DB only."""
        return kind != "table" or (name or "").startswith(self.table_prefix)

    def _lock_id(self) -> int:
        digest = hashlib.blake2b(f"impactwatch:{self.version_table}".encode(), digest_size=8)
        return int.from_bytes(digest.digest(), "big", signed=True)


def create_or_adopt(tables: MetaData) -> None:
    """The body of a first revision: create `tables` (the schema as it was when migrations
    began), or adopt a DB made before migrations, where the tables exist: add the nullable
    columns and the indexes an earlier version lacked, as the code before migrations did."""
    bind = op.get_bind()
    db = inspect(bind)
    for table in tables.sorted_tables:
        if not db.has_table(table.name):
            table.create(bind)
            continue
        have = {c["name"] for c in db.get_columns(table.name)}
        for column in table.columns:
            if column.name not in have:
                assert column.nullable, f"{table.name}.{column.name}: only nullable columns added"
                op.add_column(table.name, Column(column.name, column.type, nullable=True))
        indexes = {i["name"] for i in db.get_indexes(table.name)}
        for index in table.indexes:
            if index.name not in indexes:
                index.create(bind)
