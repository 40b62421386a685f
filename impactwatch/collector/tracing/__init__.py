"""OpenTelemetry traces of finished DAG runs: spans as plain data, and their export."""
