"""`impactwatch demo`: real Airflow runs -> the collector -> what it measured."""
