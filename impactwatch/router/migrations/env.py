"""Alembic environment of the router's state DB (docs/design-notes.md, "Schema changes")."""

from impactwatch.router.tables import MIGRATIONS

MIGRATIONS.run_env()
