from __future__ import annotations

from prometheus_client import CollectorRegistry

from impactwatch.catalog.model import Catalog
from impactwatch.collector.events import AssetUpdate, DagRun, TaskTry
from impactwatch.collector.metrics.exporter import ImpactwatchCollector
from impactwatch.collector.metrics.state import OTHER, POOLS_PER_DAG, DagInfo, MetricsState
from impactwatch.collector.state.store import Changes, Summary

T0 = 1_795_500_000.0  # 2026-11-24 06:00 UTC
MIN = 60.0

CATALOG = Catalog.model_validate(
    {
        "teams": {"risk": {"slack_channel": "#risk"}, "platform": {"slack_channel": "#p"}},
        "datasets": {
            "scores": {
                "title": "Scores",
                "team": "risk",
                "tier": "critical",
                "produced_by": "risk_scoring.publish",
                "freshness": "30m",
            },
            "kpis": {"team": "risk", "produced_by": "s3://b/kpis", "freshness": "1h"},
            "ledger": {"produced_by": "etl", "freshness": "1h"},
        },
        "pipelines": {
            "risk_scoring": {"team": "risk", "max_duration": "20m"},
            "etl": {"team": "platform", "deadline": "07:00 UTC"},
        },
    }
)


def scrape(state: MetricsState, now: float) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ImpactwatchCollector(state, clock=lambda: now))
    return registry


def breaches(reg: CollectorRegistry, **labels: str) -> float | None:
    return reg.get_sample_value("impactwatch_sla_breaches_total", labels)


def finished(dag_id: str, run_id: str, start: float, end: float, state: str = "success") -> Changes:
    run = DagRun(
        dag_id=dag_id,
        run_id=run_id,
        state=state,
        run_type="scheduled",
        logical_date=None,
        run_after=start,
        queued_at=start,
        start=start,
        end=end,
    )
    tries = [
        TaskTry(
            dag_id=dag_id,
            run_id=run_id,
            task_id="t",
            map_index=-1,
            try_number=1,
            state=state,
            start=start,
            end=end,
            duration=end - start,
        )
    ]
    return Changes(finished_runs=[(run, tries)], terminal_runs=[run])


def test_freshness_on_a_critical_data_product_is_critical_at_once_and_counted_once() -> None:
    state = MetricsState(CATALOG)
    done = TaskTry(
        dag_id="risk_scoring",
        run_id="r1",
        task_id="publish",
        map_index=-1,
        try_number=1,
        state="success",
        start=T0 - 60,
        end=T0,
    )
    state.apply(Changes(succeeded_tries=[done]), "poller", T0)
    assert state.evaluate(T0 + 29 * MIN) == {}
    pending = state.evaluate(T0 + 31 * MIN)
    assert list(pending) == [f"freshness|scores|{T0:.3f}|critical"]
    assert state.evaluate(T0 + 90 * MIN) == {}
    reg = scrape(state, T0 + 90 * MIN)
    labels = {"dataset": "scores", "team": "risk", "tier": "critical"}
    assert reg.get_sample_value("impactwatch_dataset_last_updated_timestamp_seconds", labels) == T0
    assert (
        reg.get_sample_value(
            "impactwatch_dataset_freshness_sla_seconds", {**labels, "source": "catalog"}
        )
        == 1800
    )
    assert (
        breaches(
            reg,
            team="risk",
            severity="critical",
            kind="freshness",
            dag_id="risk_scoring",
            dataset="scores",
        )
        == 1
    )
    # a restart with the persisted keys counts nothing again
    again = MetricsState(CATALOG)
    again.restore(Summary({}, {}, {("risk_scoring", "publish"): T0}, {}, set(pending), []))
    assert again.evaluate(T0 + 90 * MIN) == {}


def test_the_severity_ladder_counts_warning_then_critical_past_twice_the_limit() -> None:
    state = MetricsState(CATALOG)
    state.apply(Changes(assets=[AssetUpdate(uri="s3://b/kpis", timestamp=T0)]), "listener", T0)
    assert [k.rsplit("|", 1)[1] for k in state.evaluate(T0 + 61 * MIN)] == ["warning"]
    assert [k.rsplit("|", 1)[1] for k in state.evaluate(T0 + 121 * MIN)] == ["critical"]
    reg = scrape(state, T0 + 121 * MIN)
    common = {"team": "risk", "kind": "freshness", "dag_id": "", "dataset": "kpis"}
    assert breaches(reg, severity="warning", **common) == 1
    assert breaches(reg, severity="critical", **common) == 1
    assert (
        reg.get_sample_value(
            "impactwatch_collector_events_total", {"source": "listener", "outcome": "new"}
        )
        is None
    )  # outcomes come from the store's Changes, none here


def test_a_paused_producer_holds_freshness_alerts() -> None:
    state = MetricsState(CATALOG)
    state.set_dags({"etl": DagInfo(paused=True), "risk_scoring": DagInfo()})
    state.apply(finished("etl", "r1", T0 - 60, T0), "poller", T0)
    assert state.evaluate(T0 + 5 * 60 * MIN) == {}
    reg = scrape(state, T0)
    assert (
        reg.get_sample_value(
            "impactwatch_dataset_producer_paused",
            {"dataset": "ledger", "team": "platform", "tier": "standard"},
        )
        == 1
    )


def test_duration_histograms_cost_and_breaches_of_finished_and_running_runs() -> None:
    state = MetricsState(CATALOG)
    state.apply(finished("risk_scoring", "r1", T0, T0 + 25 * MIN), "poller", T0 + 25 * MIN)
    state.set_running({("risk_scoring", "r2"): T0 + 30 * MIN})
    state.evaluate(T0 + 75 * MIN)  # r2 has run 45 min: more than twice the 20 min limit
    reg = scrape(state, T0 + 75 * MIN)
    dag = {"dag_id": "risk_scoring", "team": "risk"}
    hist = "impactwatch_dag_run_duration_seconds"
    assert reg.get_sample_value(f"{hist}_count", {**dag, "state": "success"}) == 1
    assert reg.get_sample_value(f"{hist}_sum", {**dag, "state": "success"}) == 25 * MIN
    assert reg.get_sample_value(f"{hist}_bucket", {**dag, "state": "success", "le": "1200.0"}) == 0
    assert reg.get_sample_value(f"{hist}_bucket", {**dag, "state": "success", "le": "1800.0"}) == 1
    assert reg.get_sample_value("impactwatch_dag_run_oldest_running_seconds", dag) == 45 * MIN
    limit = {**dag, "source": "catalog"}
    assert reg.get_sample_value("impactwatch_dag_run_max_duration_seconds", limit) == 20 * MIN
    assert reg.get_sample_value("impactwatch_dag_run_last_success_timestamp_seconds", dag) == (
        T0 + 25 * MIN
    )
    cost = reg.get_sample_value("impactwatch_dag_run_cost_dollars_sum", dag)
    assert cost is not None and cost > 0
    common = {"team": "risk", "kind": "duration", "dag_id": "risk_scoring", "dataset": ""}
    assert breaches(reg, severity="warning", **common) == 2  # r1 (25 min) and r2
    assert breaches(reg, severity="critical", **common) == 1  # r2 only


def test_deadline_gauge_and_missed_deadline_breach() -> None:
    state = MetricsState(CATALOG)
    state.apply(finished("etl", "r1", T0 - 2 * 86400, T0 - 2 * 86400 + 60), "poller", T0)
    now = T0 + 2 * 60 * MIN  # 08:00 UTC: today's 07:00 deadline missed
    state.evaluate(now)
    reg = scrape(state, now)
    dag = {"dag_id": "etl", "team": "platform"}
    assert reg.get_sample_value("impactwatch_dag_run_deadline_timestamp_seconds", dag) == T0 + 3600
    assert (
        breaches(
            reg, team="platform", severity="warning", kind="deadline", dag_id="etl", dataset=""
        )
        == 1
    )


def test_deleted_dags_lose_their_series() -> None:
    state = MetricsState(CATALOG)
    state.set_dags({"etl": DagInfo(), "risk_scoring": DagInfo()})
    state.apply(finished("etl", "r1", T0, T0 + 60), "poller", T0)
    state.set_dags({"risk_scoring": DagInfo()})
    reg = scrape(state, T0)
    labels = {"dag_id": "etl", "team": "platform", "state": "success"}
    assert reg.get_sample_value("impactwatch_dag_run_duration_seconds_count", labels) is None
    assert (
        reg.get_sample_value(
            "impactwatch_dag_run_last_success_timestamp_seconds",
            {"dag_id": "etl", "team": "platform"},
        )
        is None
    )


def test_clock_skewed_future_timestamps_are_clamped() -> None:
    state = MetricsState(CATALOG)
    state.apply(
        Changes(assets=[AssetUpdate(uri="s3://b/kpis", timestamp=T0 + 86400)]), "poller", T0
    )
    reg = scrape(state, T0)
    assert (
        reg.get_sample_value(
            "impactwatch_dataset_last_updated_timestamp_seconds",
            {"dataset": "kpis", "team": "risk", "tier": "standard"},
        )
        == T0
    )


def test_an_asset_product_is_paused_when_every_writer_of_the_asset_is() -> None:
    state = MetricsState(CATALOG)
    labels = {"dataset": "kpis", "team": "risk", "tier": "standard"}
    state.apply(Changes(assets=[AssetUpdate(uri="s3://b/kpis", timestamp=T0)]), "poller", T0)
    state.set_dags(
        {"a": DagInfo(paused=True), "b": DagInfo()}, {"s3://b/kpis": [("a", "t"), ("b", "t")]}
    )
    assert scrape(state, T0).get_sample_value("impactwatch_dataset_producer_paused", labels) == 0
    state.set_dags({"a": DagInfo(paused=True), "b": DagInfo(paused=True)})
    assert scrape(state, T0).get_sample_value("impactwatch_dataset_producer_paused", labels) == 1
    assert state.evaluate(T0 + 5 * 60 * MIN) == {}


def test_paused_pipelines_have_no_deadline_and_missed_airflow_deadlines_follow_the_tier() -> None:
    catalog = Catalog.model_validate(
        {"pipelines": {"etl": {"tier": "critical", "deadline": "07:00 UTC"}}}
    )
    state = MetricsState(catalog)
    state.apply(finished("etl", "r1", T0 - 2 * 86400, T0 - 2 * 86400 + 60), "poller", T0)
    state.set_dags({"etl": DagInfo(paused=True)})
    dag = {"dag_id": "etl", "team": "platform"}
    assert (
        scrape(state, T0).get_sample_value("impactwatch_dag_run_deadline_timestamp_seconds", dag)
        is None
    )
    state.set_dags({"etl": DagInfo()})
    state.set_platform(missed_deadlines={"etl": [("d-1", T0 - 60)]})
    pending = state.evaluate(T0)
    assert "deadline|etl|af:d-1|critical" in pending


def test_refusals_are_counted_while_a_scrape_holds_the_metrics_lock() -> None:
    """The intake counts a refused request at once, from its event loop, without waiting for
    the lock a scrape holds while it renders; the next reader sees the count."""
    import threading

    state = MetricsState(Catalog())
    held, release = threading.Event(), threading.Event()

    def scrape() -> None:
        with state.lock:
            held.set()
            release.wait(10)

    scraper = threading.Thread(target=scrape)
    scraper.start()
    assert held.wait(10)
    counter = threading.Thread(target=state.self_stats.count, args=("listener", "invalid"))
    counter.start()
    counter.join(5)
    assert not counter.is_alive()  # not blocked by the scrape
    release.set()
    scraper.join(10)
    state.apply(Changes(outcomes={"new": 2}), "listener", 200.0)
    assert state.self_stats.event_counts() == {("listener", "invalid"): 1, ("listener", "new"): 2}


def queued_try(dag_id: str, pool: str) -> TaskTry:
    return TaskTry(
        dag_id=dag_id,
        run_id="r",
        task_id="t",
        map_index=-1,
        try_number=1,
        state="running",
        queued=T0,
        start=T0 + 5,
        pool=pool,
    )


def test_a_dags_queued_histogram_has_a_bounded_number_of_pool_series() -> None:
    state = MetricsState(CATALOG)
    state.set_platform(pools={"heavy": {"total": 4}})
    invented = [queued_try("etl", f"made_up_{n}") for n in range(POOLS_PER_DAG + 50)]
    state.apply(Changes(queued_tries=[*invented, queued_try("etl", "heavy")]), "listener", T0)
    pools = [labels[2] for labels in state.queued.series if labels[0] == "etl"]
    assert len(pools) == POOLS_PER_DAG + 2  # the first invented ones, OTHER, Airflow's pool
    assert "heavy" in pools and OTHER in pools
    reg = scrape(state, T0)
    labels = {"dag_id": "etl", "team": "platform", "pool": OTHER}
    assert reg.get_sample_value("impactwatch_task_queued_seconds_count", labels) == 50


def test_restored_series_of_dags_airflow_does_not_know_go_with_the_first_dag_list() -> None:
    state = MetricsState(CATALOG)
    state.restore(
        Summary(
            last_success={"etl": T0, "made_up": T0},
            last_failure={"made_up": T0},
            task_success={},
            asset_updates={"s3://b/kpis": T0, "s3://invented/1": T0},
            breaches=set(),
            open_runs=[],
        )
    )
    assert set(state.asset_updates) == {"s3://b/kpis"}  # only what a data product is made of
    state.set_dags({"etl": DagInfo()})
    reg = scrape(state, T0)
    seen = {"dag_id": "etl", "team": "platform"}
    assert reg.get_sample_value("impactwatch_dag_run_last_success_timestamp_seconds", seen) == T0
    assert "made_up" not in state.dag_keys()
