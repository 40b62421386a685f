"""Developer tools: real Airflow metadata databases for tests, the demo and benchmarks.

Nothing here imports Airflow: Airflow runs in its own virtualenv, driven as a subprocess.
"""
