"""Daily executive KPI pack, mailed before the morning meeting (the mail is a log line)."""

from __future__ import annotations

from airflow.sdk import dag, task
from fintech_common import START_DATE, scripted


@dag(
    dag_id="morning_reporting",
    schedule="30 6 * * *",
    start_date=START_DATE,
    catchup=False,
    tags=["team:reporting"],
    default_args={"owner": "reporting"},
)
def morning_reporting():
    @task
    def extract_kpis() -> dict:
        scripted()
        return {"revenue": 1_000_000, "new_customers": 321}

    @task
    def render_dashboard_pack(kpis: dict) -> str:
        scripted()
        return f"pack with {len(kpis)} KPIs"

    @task
    def email_executives(pack: str) -> None:
        scripted()
        print(f"would email executives: {pack}")

    email_executives(render_dashboard_pack(extract_kpis()))


morning_reporting()
