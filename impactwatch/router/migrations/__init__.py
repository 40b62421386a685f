"""Alembic scripts of the router's state DB, run by `tables.MIGRATIONS`."""
