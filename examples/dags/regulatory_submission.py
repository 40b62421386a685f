"""Daily regulatory report: built, validated, submitted (the submission retries once)."""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import dag, task
from fintech_common import START_DATE, scripted


@dag(
    dag_id="regulatory_submission",
    schedule="0 5 * * *",
    start_date=START_DATE,
    catchup=False,
    tags=["team:compliance"],
    default_args={"owner": "compliance"},
)
def regulatory_submission():
    @task
    def build_report() -> str:
        scripted()
        return "report-v1"

    @task
    def validate_submission(report: str) -> str:
        scripted()
        return report

    @task(retries=1, retry_delay=timedelta(seconds=2))
    def submit_to_regulator(report: str) -> None:
        scripted()
        print(f"submitted {report}")

    submit_to_regulator(validate_submission(build_report()))


regulatory_submission()
