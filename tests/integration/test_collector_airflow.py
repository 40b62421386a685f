"""The collector against real Airflow 3 metadata DBs with real DAG runs (PostgreSQL, SQLite)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, select

from impactwatch.catalog.model import Catalog
from impactwatch.collector.state.schema import asset_update_t
from impactwatch.collector.state.store import task_try_t
from tests.integration.helpers import catch_up, copy_of, make_service, registry, sql

pytestmark = pytest.mark.integration

TEAMS = {
    "market_data_ingest": "markets",
    "risk_scoring": "risk",
    "regulatory_submission": "compliance",
    "morning_reporting": "reporting",
    "nightly_heavy_etl": "platform",
    "payments_reconciliation": "finance",
}
RUN_COUNT = "impactwatch_dag_run_duration_seconds_count"


VARIANTS = {
    "postgresql": "airflow_pg_url",
    "postgresql-upgraded": "airflow_pg_migrated_url",
    "sqlite": "airflow_sqlite_url",
}


@pytest.fixture(params=sorted(VARIANTS))
def airflow_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue(VARIANTS[request.param])


def runs(service, dag_id: str, state: str) -> float | None:  # type: ignore[no-untyped-def]
    labels = {"dag_id": dag_id, "team": TEAMS[dag_id], "state": state}
    return registry(service).get_sample_value(RUN_COUNT, labels)


def test_the_populated_scenario_is_measured_once(airflow_url: str, tmp_path: Path) -> None:
    service = make_service(airflow_url, tmp_path)
    try:
        catch_up(service)
        # every real run counted once, by final state, with the catalog's team
        assert runs(service, "market_data_ingest", "success") == 1
        assert runs(service, "market_data_ingest", "failed") == 1
        for dag_id in set(TEAMS) - {"market_data_ingest"}:
            assert runs(service, dag_id, "success") == 1, dag_id
        reg = registry(service)
        # data products: market_data from its asset event, fx_rates from a task's success,
        # customer risk scores from the asset-triggered (logical_date NULL) run's asset
        for dataset, team, tier in [
            ("market_data", "markets", "critical"),
            ("fx_rates", "markets", "high"),
            ("customer_risk_scores", "risk", "critical"),
            ("regulatory_submission", "compliance", "critical"),
        ]:
            labels = {"dataset": dataset, "team": team, "tier": tier}
            assert reg.get_sample_value(
                "impactwatch_dataset_last_updated_timestamp_seconds", labels
            ), dataset
        assert (
            reg.get_sample_value("impactwatch_pool_slots", {"pool": "heavy_etl", "state": "total"})
            == 2
        )
        assert reg.get_sample_value("impactwatch_dag_import_errors") == 0
        assert (
            reg.get_sample_value(
                "impactwatch_dag_run_cost_dollars_count",
                {"dag_id": "nightly_heavy_etl", "team": "platform"},
            )
            == 1
        )
        # retries: both tries of submit_to_regulator are stored (each costs); mapped tasks too
        engine = create_engine(service.settings.state_db)
        with engine.connect() as conn:
            tries = conn.execute(
                select(
                    task_try_t.c.task_id,
                    task_try_t.c.map_index,
                    task_try_t.c.try_number,
                    task_try_t.c.state,
                )
                .where(task_try_t.c.task_id.in_(("submit_to_regulator", "score_customers")))
                .order_by(task_try_t.c.task_id, task_try_t.c.map_index, task_try_t.c.try_number)
            ).all()
            # history before the first start: each asset's latest event, with its producing
            # task (so the listener's copy of that event is the same row)
            prices = conn.execute(
                select(asset_update_t.c.dag_id, asset_update_t.c.task_id).where(
                    asset_update_t.c.uri == "s3://fintech-lake/market/prices"
                )
            ).all()
        assert [tuple(p) for p in prices] == [("market_data_ingest", "publish_market_data")], prices
        assert [tuple(t) for t in tries] == [
            ("score_customers", 0, 1, "success"),
            ("score_customers", 1, 1, "success"),
            ("score_customers", 2, 1, "success"),
            ("submit_to_regulator", -1, 1, "failed"),
            ("submit_to_regulator", -1, 2, "success"),
        ]
        # a second cycle sees nothing new and observes nothing twice
        before = reg.get_sample_value(
            "impactwatch_collector_events_total", {"source": "poller", "outcome": "new"}
        )
        service.poll_once()
        assert (
            reg.get_sample_value(
                "impactwatch_collector_events_total", {"source": "poller", "outcome": "new"}
            )
            == before
        )
        assert runs(service, "market_data_ingest", "failed") == 1
    finally:
        service.close()
    # a restart observes nothing again: counters continue where they were, gauges come back
    again = make_service(airflow_url, tmp_path)
    try:
        catch_up(again)
        assert runs(again, "market_data_ingest", "failed") == 1
        assert registry(again).get_sample_value(
            "impactwatch_dag_run_last_success_timestamp_seconds",
            {"dag_id": "morning_reporting", "team": "reporting"},
        )
    finally:
        again.close()


def test_cleared_rerun_paused_and_deleted(
    pg_base_url: str, airflow_pg_url: str, tmp_path: Path
) -> None:
    with copy_of(pg_base_url, airflow_pg_url) as url:
        service = make_service(url, tmp_path, declarations_interval=0.001)
        try:
            catch_up(service)
            assert runs(service, "morning_reporting", "success") == 1
            # a user clears the finished run: Airflow queues it again with clear_number + 1
            sql(
                url,
                "UPDATE dag_run SET state='queued', clear_number=clear_number+1, "
                "end_date=NULL WHERE dag_id='morning_reporting'",
            )
            sql(
                url,
                "INSERT INTO log (dttm, dag_id, run_id, event) SELECT now(), dag_id, run_id,"
                " 'clear' FROM dag_run WHERE dag_id='morning_reporting'",
            )
            service.poll_once()
            assert "morning_reporting" in {d for d, _ in service.state.running}
            sql(
                url,
                "UPDATE dag_run SET state='success', end_date=now() "
                "WHERE dag_id='morning_reporting'",
            )
            service.poll_once()
            assert runs(service, "morning_reporting", "success") == 2  # the re-run counts
            # pausing the producer shows, and a deleted run stops being tracked
            sql(url, "UPDATE dag SET is_paused=true WHERE dag_id='nightly_heavy_etl'")
            sql(
                url,
                "UPDATE dag_run SET state='running', end_date=NULL "
                "WHERE dag_id='payments_reconciliation'",
            )
            service.poll_once()
            assert (
                registry(service).get_sample_value(
                    "impactwatch_dag_paused", {"dag_id": "nightly_heavy_etl", "team": "platform"}
                )
                == 1
            )
            assert "payments_reconciliation" in {d for d, _ in service.state.running}
            sql(url, "DELETE FROM dag_run WHERE dag_id='payments_reconciliation'")
            service.poll_once()
            assert "payments_reconciliation" not in {d for d, _ in service.state.running}
            assert service.store.open_run_keys() == set()
        finally:
            service.close()


def test_airflow_declarations_alone_make_a_catalog(airflow_sqlite_url: str, tmp_path: Path) -> None:
    """No YAML: DAG tags give teams, an Asset's `extra` gives a data product and its SLA."""
    service = make_service(airflow_sqlite_url, tmp_path, catalog=Catalog())
    try:
        catch_up(service)
        reg = registry(service)
        assert (
            reg.get_sample_value(
                "impactwatch_dataset_freshness_sla_seconds",
                {
                    "dataset": "customer_risk_scores",
                    "team": "risk",
                    "tier": "standard",
                    "source": "catalog",  # declared in Airflow: a catalog value, not learned
                },
            )
            == 90 * 60
        )  # from Asset(extra={"team": "risk", "freshness": "90m", ...})
        assert reg.get_sample_value(
            "impactwatch_dag_run_last_success_timestamp_seconds",
            {"dag_id": "market_data_ingest", "team": "markets"},  # from the tag team:markets
        )
    finally:
        service.close()
