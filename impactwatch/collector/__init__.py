"""The collector: reads Airflow's DB, takes listener events, keeps the state DB, serves /metrics."""
