"""Airflow plugin: listeners that post task, dag-run and asset events (standard library only)."""
