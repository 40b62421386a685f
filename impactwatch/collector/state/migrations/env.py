"""Alembic environment of the collector's state DB (docs/design-notes.md, "Schema changes")."""

from impactwatch.collector.state.schema import MIGRATIONS

MIGRATIONS.run_env()
