"""Nightly ledger ETL in the ``heavy_etl`` pool; conf sets its CPU burn and XCom size.

``{"cpu_seconds": 0.2}``: CPU seconds burnt by transform_ledger (default 0.2);
``{"xcom_kb": 1}``: KiB of the XCom returned by load_warehouse (default 1).
"""

from __future__ import annotations

from airflow.sdk import dag, task
from fintech_common import START_DATE, burn_cpu, scripted


@dag(
    dag_id="nightly_heavy_etl",
    schedule="@daily",
    start_date=START_DATE,
    catchup=False,
    tags=["team:platform"],
    default_args={"owner": "platform", "pool": "heavy_etl"},
)
def nightly_heavy_etl():
    @task
    def extract_transactions() -> int:
        scripted()
        return 10_000

    @task
    def transform_ledger(rows: int) -> int:
        conf = scripted()
        used = burn_cpu(float(conf.get("cpu_seconds", 0.2)))
        print(f"transformed {rows} rows in {used:.2f} CPU seconds")
        return rows

    @task
    def load_warehouse(rows: int) -> str:
        conf = scripted()
        return "x" * int(float(conf.get("xcom_kb", 1)) * 1024)

    load_warehouse(transform_ledger(extract_transactions()))


nightly_heavy_etl()
