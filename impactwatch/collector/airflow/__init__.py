"""Reading Airflow's metadata DB: its schema as we read it, the incremental poller, declarations."""
