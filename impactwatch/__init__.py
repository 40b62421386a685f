"""impactwatch: business-impact observability and alerting for Apache Airflow."""
