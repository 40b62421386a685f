"""Time-based pool sizing: usage by hour of week from the collector's state DB, advice by time
window with its reason and expected effect, and an opt-in apply through Airflow's REST API."""
