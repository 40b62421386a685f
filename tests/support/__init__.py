"""Helpers for tests that need real servers (PostgreSQL, Airflow)."""
