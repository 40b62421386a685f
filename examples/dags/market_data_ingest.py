"""Hourly market data: prices and FX rates, validated, published as the ``market_data`` asset."""

from __future__ import annotations

from airflow.sdk import dag, task
from fintech_common import MARKET_DATA, START_DATE, scripted


@dag(
    dag_id="market_data_ingest",
    schedule="@hourly",
    start_date=START_DATE,
    catchup=False,
    tags=["team:markets"],
    default_args={"owner": "markets"},
)
def market_data_ingest():
    @task
    def fetch_prices() -> int:
        scripted()
        return 1250

    @task
    def fetch_fx_rates() -> int:
        scripted()
        return 42

    @task
    def validate_market_data(prices: int, fx_rates: int) -> int:
        scripted()
        return prices + fx_rates

    @task(outlets=[MARKET_DATA])
    def publish_market_data(rows: int) -> None:
        scripted()
        print(f"published {rows} market data rows")

    publish_market_data(validate_market_data(fetch_prices(), fetch_fx_rates()))


market_data_ingest()
