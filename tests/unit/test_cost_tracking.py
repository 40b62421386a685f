"""Cost per run and per task as the collector exports them: last run beside the usual one,
the most expensive tasks with bounded labels, history restored from the state DB."""

from __future__ import annotations

from decimal import Decimal
from functools import partial
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from impactwatch.catalog.model import Catalog
from impactwatch.collector.cost.history import load_cost_history
from impactwatch.collector.cost.pricing import Pricing
from impactwatch.collector.cost.tracking import (
    COST_HISTORY_RUNS,
    HISTORY,
    MIN_HISTORY,
    OTHER,
    CostTracker,
)
from impactwatch.collector.events import Batch, DagRun, TaskTry
from impactwatch.collector.metrics.exporter import ImpactwatchCollector
from impactwatch.collector.metrics.state import DagInfo, MetricsState
from impactwatch.collector.state.store import Changes, Store, make_engine

T0 = 1_795_500_000.0
D = Decimal

CATALOG = Catalog.model_validate(
    {
        "teams": {"risk": {"slack_channel": "#risk"}},
        "datasets": {"scores": {"team": "risk", "produced_by": "wide.publish", "freshness": "1h"}},
        "pipelines": {"wide": {"team": "risk", "cost_basis": "reserved"}},
        "cost": {
            "rates": {"cpu_hour": "3.6", "memory_gb_hour": "0"},  # $0.001 per CPU-second
            "tasks": {"wide.audit": {"cpu": 1, "memory_gb": 1}},
            "top_tasks": 3,
        },
    }
)


def tracker() -> CostTracker:
    return CostTracker(2, {"etl": frozenset({"named"})})


def test_last_and_median_of_the_runs_before_it_from_enough_history() -> None:
    costs = tracker()
    for n in range(MIN_HISTORY):  # 5 runs: the latest and 4 before it
        costs.record("etl", D(10 + n), {"a": D(10 + n)})
    assert costs.last("etl") == D(14)
    assert costs.median_before_last("etl") is None  # 4 earlier runs: not enough yet
    costs.record("etl", D(100), {"a": D(100)})
    assert costs.last("etl") == D(100)
    assert costs.median_before_last("etl") == D(12)  # 10..14: the latest is not in it
    for _ in range(HISTORY + 5):
        costs.record("etl", D(1), {"a": D(1)})
    assert costs.median_before_last("etl") == D(1)  # only the last 20 before the latest count
    assert costs.last("nope") is None and costs.median_before_last("nope") is None


def test_top_tasks_named_tasks_and_other_keep_labels_bounded() -> None:
    costs = tracker()
    tasks = {f"t{i}": D(i) for i in range(1, 11)} | {"named": D("0.5")}
    costs.record("etl", D(55.5), tasks)
    series = dict(costs.task_series("etl"))
    assert set(series) == {"t10", "t9", "named", OTHER}  # top 2, the named one, the rest
    assert series[OTHER] == sum(D(i) for i in range(1, 9))
    assert sum(series.values()) == D("55.5")  # nothing lost: the run's total
    # t1 becomes expensive: it enters the top 2 (t9 leaves, its spend now goes to other)
    costs.record("etl", D(100), {"t1": D(100), "t9": D(1)})
    series = dict(costs.task_series("etl"))
    assert set(series) == {"t1", "t10", "named", OTHER}
    assert series["t1"] == D(100)  # this run's spend; the first run's $1 went to (other)
    assert series[OTHER] == sum(D(i) for i in range(1, 9)) + D(1)


def test_seeded_history_ranks_tasks_but_adds_no_spend() -> None:
    costs = tracker()
    costs.seed("etl", [D(5), D(7)], {"old_big": D(11), "b": D(1)})
    assert costs.last("etl") == D(7)
    assert costs.task_series("etl") == []  # counters count what this process sees
    costs.record("etl", D(2), {"b": D(1), "c": D(1)})
    assert dict(costs.task_series("etl")) == {"b": D(1), OTHER: D(1)}  # old_big, b on top
    costs.drop(["etl"])
    assert costs.last("etl") is None


def run_changes(run_id: str, end: float, tasks: dict[str, float]) -> Changes:
    """A finished run of `wide` whose tasks ran `tasks` seconds (1 CPU: $0.001 a second)."""
    run = DagRun(
        dag_id="wide",
        run_id=run_id,
        state="success",
        run_type="manual",
        logical_date=None,
        run_after=end - 60,
        queued_at=end - 60,
        start=end - 60,
        end=end,
    )
    tries = [
        TaskTry(
            dag_id="wide",
            run_id=run_id,
            task_id=task,
            map_index=-1,
            try_number=1,
            state="success",
            start=end - 60,
            end=end,
            duration=seconds,
        )
        for task, seconds in tasks.items()
    ]
    return Changes(finished_runs=[(run, tries)], terminal_runs=[run])


def scrape(state: MetricsState) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ImpactwatchCollector(state, clock=lambda: T0))
    return registry


def test_the_collector_exports_last_usual_and_task_costs() -> None:
    state = MetricsState(CATALOG)
    work = {f"step{i}": 10.0 * i for i in range(1, 7)} | {"publish": 1.0, "audit": 2.0}
    for n in range(6):
        state.apply(run_changes(f"r{n}", T0 + n, work), "poller", T0 + n)
    state.apply(run_changes("big", T0 + 9, {**work, "step1": 5000.0}), "poller", T0 + 9)
    reg = scrape(state)
    dag = {"dag_id": "wide", "team": "risk"}
    usual = 0.001 * sum(work.values())
    assert reg.get_sample_value("impactwatch_dag_run_median_cost_dollars", dag) == usual
    last = reg.get_sample_value("impactwatch_dag_run_last_cost_dollars", dag)
    assert last == usual + 0.001 * (5000 - 10)

    def task(task_id: str) -> float | None:
        return reg.get_sample_value(
            "impactwatch_task_cost_dollars_total", {**dag, "task_id": task_id}
        )

    # top 3 by cost over the runs seen (step1 after its big run), publish (a data product's
    # producer) and audit (named in cost.tasks) always; everything else in (other)
    assert task("step1") is not None and task("step6") is not None and task("step5") is not None
    assert task("publish") is not None and task("audit") is not None
    assert task("step2") is None and task("step3") is None
    assert task(OTHER) is not None
    exported = sum(
        s.value
        for family in reg.collect()
        if family.name == "impactwatch_task_cost_dollars"
        for s in family.samples
    )
    counted = state.costs.dags["wide"].series
    assert sum(counted.values()) == D("0.001") * D(6 * 213 + 213 + 4990)  # every try, once
    assert "step4" in counted and task("step4") is None  # left the top 3: no longer exported
    assert exported == pytest.approx(float(sum(counted.values()) - counted["step4"]))
    # a DAG Airflow deleted takes its cost series with it
    state.set_dags({"wide": DagInfo(), "other": DagInfo()})
    state.set_dags({"other": DagInfo()})
    assert "wide" not in state.costs.dags


def test_history_survives_a_restart_through_the_state_db(tmp_path: Path) -> None:
    store = Store(make_engine(f"sqlite:///{tmp_path / 'state.db'}"))
    for n in range(8):
        end = T0 + 100 * n
        changes = run_changes(f"r{n}", end, {"a": 60.0 * (n + 1)})
        ((run, tries),) = changes.finished_runs
        store.ingest(Batch(task_tries=tries, dag_runs=[run]))
    restarted = MetricsState(CATALOG)
    history = partial(load_cost_history, store.engine, per_dag=COST_HISTORY_RUNS)
    restarted.restore(Store(store.engine).summary(), history)
    assert restarted.costs.last("wide") == D("0.48")  # the 8th run: 480 CPU-seconds
    # median of runs 1..7 (60..420 s): 240 s
    assert restarted.costs.median_before_last("wide") == D("0.24")
    reg = scrape(restarted)
    assert (
        reg.get_sample_value(
            "impactwatch_dag_run_last_cost_dollars", {"dag_id": "wide", "team": "risk"}
        )
        == 0.48
    )
    assert restarted.costs.task_series("wide") == []  # no spend counted twice after a restart


def test_the_pricing_follows_catalog_changes() -> None:
    state = MetricsState(CATALOG)
    before = state.pricing
    state.set_catalog(CATALOG.model_copy(update={"defaults": CATALOG.defaults}))
    assert state.pricing is before  # same cost section: kept
    cheaper = CATALOG.cost.model_copy(update={"top_tasks": 1})
    state.set_catalog(CATALOG.model_copy(update={"cost": cheaper}))
    assert isinstance(state.pricing, Pricing) and state.pricing is not before
    assert state.costs.top_n == 1
