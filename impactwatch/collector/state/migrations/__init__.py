"""Alembic scripts of the collector's state DB, run by `schema.MIGRATIONS`."""
