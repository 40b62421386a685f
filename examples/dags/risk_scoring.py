"""Customer risk scores, recomputed whenever market data lands (asset-triggered runs)."""

from __future__ import annotations

from airflow.sdk import dag, task
from fintech_common import CUSTOMER_RISK_SCORES, MARKET_DATA, START_DATE, scripted

SEGMENTS = ["retail", "sme", "corporate"]


@dag(
    dag_id="risk_scoring",
    schedule=[MARKET_DATA],
    start_date=START_DATE,
    catchup=False,
    tags=["team:risk", "dataset:customer_risk_scores"],
    default_args={"owner": "risk"},
)
def risk_scoring():
    @task
    def load_positions() -> list[str]:
        scripted()
        return list(SEGMENTS)

    @task
    def score_customers(segment: str) -> dict:
        scripted()
        return {"segment": segment, "customers": 100}

    @task(outlets=[CUSTOMER_RISK_SCORES])
    def publish_scores(scores: list[dict]) -> int:
        scripted()
        return sum(s["customers"] for s in scores)

    publish_scores(score_customers.expand(segment=load_positions()))


risk_scoring()
