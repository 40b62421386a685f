"""Daily reconciliation of card and bank payments against the ledger."""

from __future__ import annotations

from airflow.sdk import dag, task
from fintech_common import START_DATE, scripted


@dag(
    dag_id="payments_reconciliation",
    schedule="0 3 * * *",
    start_date=START_DATE,
    catchup=False,
    tags=["team:finance"],
    default_args={"owner": "finance"},
)
def payments_reconciliation():
    @task
    def reconcile_payments() -> int:
        scripted()
        return 0

    @task
    def publish_reconciliation(mismatches: int) -> None:
        scripted()
        print(f"reconciliation published, {mismatches} mismatches")

    publish_reconciliation(reconcile_payments())


payments_reconciliation()
