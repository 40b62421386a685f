"""One byte-exact exposition: the wire format Prometheus reads, checked to the letter."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from impactwatch.catalog.model import Catalog
from impactwatch.collector.events import AssetUpdate
from impactwatch.collector.metrics.exporter import ImpactwatchCollector
from impactwatch.collector.metrics.state import DagInfo, MetricsState
from impactwatch.collector.state.store import Changes

T0 = 1_795_500_000.0

EXPECTED = """\
# HELP impactwatch_dataset_last_updated_timestamp_seconds Last successful update of the data product (Unix time).
# TYPE impactwatch_dataset_last_updated_timestamp_seconds gauge
impactwatch_dataset_last_updated_timestamp_seconds{dataset="scores",team="risk",tier="standard"} 1.7955e+09
# HELP impactwatch_dataset_freshness_sla_seconds Maximum allowed age of the data product before it counts as stale; source: catalog, or learned from its usual update times.
# TYPE impactwatch_dataset_freshness_sla_seconds gauge
impactwatch_dataset_freshness_sla_seconds{dataset="scores",source="catalog",team="risk",tier="standard"} 1800.0
# HELP impactwatch_dataset_producer_paused 1 when the DAG producing the data product is paused (freshness alerts hold off).
# TYPE impactwatch_dataset_producer_paused gauge
impactwatch_dataset_producer_paused{dataset="scores",team="risk",tier="standard"} 0.0
# HELP impactwatch_dataset_producer 1 for each DAG and task that refreshes the data product (task_id empty: every successful run): the catalog's produced_by, or an Asset's declared writers and its events' sources. Alert annotations carry it to the router (docs/design-notes.md, "Producers").
# TYPE impactwatch_dataset_producer gauge
impactwatch_dataset_producer{dag_id="risk_scoring",dataset="scores",task_id="publish"} 1.0
# HELP impactwatch_dataset_usual_update_by_timestamp_seconds When the update after the last one usually comes by, learned from history (Unix time).
# TYPE impactwatch_dataset_usual_update_by_timestamp_seconds gauge
# HELP impactwatch_dataset_baseline_updates Updates the data product's learned cadence is made of (none learned below 8).
# TYPE impactwatch_dataset_baseline_updates gauge
impactwatch_dataset_baseline_updates{dataset="scores",team="risk",tier="standard"} 1.0
# HELP impactwatch_dataset_expected_update_timestamp_seconds When the data product's next update will likely come, from the pace of the run that makes it (in flight, or late to start: task_id empty) and learned task times (Unix time).
# TYPE impactwatch_dataset_expected_update_timestamp_seconds gauge
# HELP impactwatch_dataset_update_due_timestamp_seconds When the data product turns late (last update plus its limit, catalog or learned), for products with an expected update (Unix time).
# TYPE impactwatch_dataset_update_due_timestamp_seconds gauge
# HELP impactwatch_dag_run_oldest_running_seconds Age of the oldest DAG run still running (duration SLA in flight).
# TYPE impactwatch_dag_run_oldest_running_seconds gauge
# HELP impactwatch_dag_run_deadline_timestamp_seconds The next deadline not yet met by a successful run (Unix time); in the past means missed.
# TYPE impactwatch_dag_run_deadline_timestamp_seconds gauge
# HELP impactwatch_dag_run_behind_seconds How far the DAG's oldest run in flight (or a run late to start: task_id empty) is behind its usual pace, at task_id, the first task not finished (negative: ahead).
# TYPE impactwatch_dag_run_behind_seconds gauge
# HELP impactwatch_dag_run_expected_end_timestamp_seconds When the DAG's oldest run in flight (or a run late to start) will likely end, at its usual pace from where it is (Unix time).
# TYPE impactwatch_dag_run_expected_end_timestamp_seconds gauge
# HELP impactwatch_dag_run_last_success_timestamp_seconds End of the last successful DAG run (Unix time).
# TYPE impactwatch_dag_run_last_success_timestamp_seconds gauge
# HELP impactwatch_dag_run_last_failure_timestamp_seconds End of the last failed DAG run (Unix time).
# TYPE impactwatch_dag_run_last_failure_timestamp_seconds gauge
# HELP impactwatch_dag_run_max_duration_seconds Duration SLA of the pipeline: a run longer than this breaches; source: catalog, or learned from its usual durations (only while a run is in flight: for the oldest one).
# TYPE impactwatch_dag_run_max_duration_seconds gauge
# HELP impactwatch_dag_run_usual_duration_seconds Learned duration of successful runs (quantile 0.5 or 0.9) for the seasonal bucket of the oldest run in flight (only while one is).
# TYPE impactwatch_dag_run_usual_duration_seconds gauge
# HELP impactwatch_dag_baseline_runs Successful runs the DAG's learned durations are made of (none learned below 5).
# TYPE impactwatch_dag_baseline_runs gauge
# HELP impactwatch_dag_paused 1 when the DAG is paused in Airflow.
# TYPE impactwatch_dag_paused gauge
impactwatch_dag_paused{dag_id="risk_scoring",team="platform"} 0.0
# HELP impactwatch_xcom_largest_bytes Largest XCom value written by the DAG's runs in the last 24 hours.
# TYPE impactwatch_xcom_largest_bytes gauge
# HELP impactwatch_sla_breaches_total SLA breaches by kind (freshness, duration, deadline), counted once per severity reached.
# TYPE impactwatch_sla_breaches_total counter
# HELP impactwatch_dag_run_duration_seconds Durations of finished DAG runs, by final state.
# TYPE impactwatch_dag_run_duration_seconds histogram
# HELP impactwatch_dag_run_schedule_delay_seconds Start of a scheduled run minus when it was due (scheduler lag).
# TYPE impactwatch_dag_run_schedule_delay_seconds histogram
# HELP impactwatch_task_queued_seconds Task start minus the time it was queued.
# TYPE impactwatch_task_queued_seconds histogram
# HELP impactwatch_dag_run_cost_dollars Cost of each finished DAG run (sum of its task tries); the sum is the spend.
# TYPE impactwatch_dag_run_cost_dollars histogram
# HELP impactwatch_dag_run_last_cost_dollars Cost of the DAG's latest finished run.
# TYPE impactwatch_dag_run_last_cost_dollars gauge
# HELP impactwatch_dag_run_median_cost_dollars Median cost of the DAG's 20 finished runs before the latest (from 5 such runs on).
# TYPE impactwatch_dag_run_median_cost_dollars gauge
# HELP impactwatch_task_cost_dollars_total Cost of the task's tries (retries and mapped instances included) in finished runs; task_id is a task the catalog names or one of the DAG's most expensive, else (other).
# TYPE impactwatch_task_cost_dollars_total counter
# HELP impactwatch_pool_slots Airflow pool slots by state: total, running, queued, open.
# TYPE impactwatch_pool_slots gauge
# HELP impactwatch_collector_poll_duration_seconds Wall time of one metadata-DB poll cycle.
# TYPE impactwatch_collector_poll_duration_seconds histogram
# HELP impactwatch_collector_rows_read_total Rows read from the Airflow metadata DB, by table.
# TYPE impactwatch_collector_rows_read_total counter
# HELP impactwatch_collector_events_total Events by source (poller, listener) and outcome (new, updated, duplicate, unknown_dag: stored but kept out of the metrics until Airflow knows the DAG); refused intake requests count once each by reason (unauthorized, invalid, too_large, queue_full, store_error, store_refused, disconnected).
# TYPE impactwatch_collector_events_total counter
impactwatch_collector_events_total{outcome="new",source="poller"} 1.0
# HELP impactwatch_collector_db_errors_total Database errors by database (airflow, state).
# TYPE impactwatch_collector_db_errors_total counter
impactwatch_collector_db_errors_total{db="airflow"} 0.0
impactwatch_collector_db_errors_total{db="state"} 0.0
# HELP impactwatch_collector_stale 1 while the collector cannot read the Airflow metadata DB and serves its last state.
# TYPE impactwatch_collector_stale gauge
impactwatch_collector_stale 1.0
"""


def test_exposition_is_byte_exact() -> None:
    catalog = Catalog.model_validate(
        {
            "teams": {"risk": {"slack_channel": "#r"}},
            "datasets": {"scores": {"team": "risk", "produced_by": "s3://b/s", "freshness": "30m"}},
        }
    )
    state = MetricsState(catalog)
    state.set_dags({"risk_scoring": DagInfo()})
    update = AssetUpdate(uri="s3://b/s", timestamp=T0, dag_id="risk_scoring", task_id="publish")
    changes = Changes(assets=[update], outcomes={"new": 1})
    state.apply(changes, "poller", T0)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ImpactwatchCollector(state, clock=lambda: T0))
    assert generate_latest(registry).decode() == EXPECTED
