"""Counters survive restarts: series staged, saved with their facts, restored exactly."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from impactwatch.catalog.model import Catalog
from impactwatch.collector.cost.tracking import DagCosts
from impactwatch.collector.events import Batch, DagRun, TaskTry
from impactwatch.collector.metrics import persisted
from impactwatch.collector.metrics.exporter import ImpactwatchCollector
from impactwatch.collector.metrics.state import MetricsState
from impactwatch.collector.state.store import Breach, Changes, Counts, Store, make_engine
from impactwatch.contract import metrics as c

T0 = 1_795_500_000.0
CATALOG = Catalog.model_validate(
    {
        "teams": {"risk": {"slack_channel": "#risk"}, "platform": {"slack_channel": "#p"}},
        "datasets": {"scores": {"team": "risk", "produced_by": "etl.publish", "freshness": "1h"}},
        "pipelines": {"etl": {"team": "platform", "max_duration": "10m"}},
        "cost": {"pools": {"heavy": {"cpu": 3, "memory_gb": 7}}},
    }
)
COUNTERS = tuple(spec.name for spec in c.BUSINESS_METRICS if spec.kind in ("counter", "histogram"))


def samples(state: MetricsState) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every counter and histogram sample /metrics would show."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ImpactwatchCollector(state, clock=lambda: T0))
    out = {}
    for family in registry.collect():
        for s in family.samples:
            if any(s.name.startswith(name.removesuffix("_total")) for name in COUNTERS):
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def a_run(run_id: str, took: float, *, clear: int = 0, state: str = "success") -> Batch:
    run = DagRun(
        dag_id="etl", run_id=run_id, state=state, run_type="scheduled", run_after=T0 - 7.3,
        queued_at=T0, start=T0 + 0.1, end=T0 + took, clear_number=clear,
    )  # fmt: skip
    tries = [
        TaskTry(
            dag_id="etl",
            run_id=run_id,
            task_id=task,
            map_index=-1,
            try_number=1 + clear,
            state="success",
            queued=T0 + 0.3,
            start=T0 + 1.7,
            end=T0 + took,
            duration=took - 1.7,
            pool="heavy" if task == "load" else None,
        )
        for task in ("extract", "load", "publish")
    ]
    return Batch(task_tries=tries, dag_runs=[run])


def write(store: Store, state: MetricsState, batch: Batch) -> Changes:
    """What the collector's writer does with a batch."""

    def stage(changes: list[Changes]) -> tuple[Counts, Callable[[], None]]:
        staged = state.stage(changes, T0)
        return staged.counts(), staged.commit

    (got,) = store.write([(batch, None)], stage)
    assert isinstance(got, Changes)
    state.apply_facts(got, "poller", T0)
    return got


def restarted(store: Store) -> MetricsState:
    """A new process's state, restored as the collector's writer does on start."""
    state = MetricsState(CATALOG)
    stale = state.restore_counters(
        persisted.decode_series(store.series()), store.breach_counts(), [], T0
    )
    assert not stale, "costs stored with today's cost model are not priced again"
    state.restore(store.summary(state.producer_tasks))
    return state


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(make_engine(f"sqlite:///{tmp_path / 'state.db'}"))


def test_every_counter_and_histogram_comes_back_as_it_was(store: Store) -> None:
    state = MetricsState(CATALOG)
    for i, took in enumerate((61.3, 907.7, 45.1)):  # one over max_duration: a breach
        write(store, state, a_run(f"r{i}", took))
    write(store, state, a_run("r0", 33.3, clear=1))  # cleared and run again: counted again
    write(store, state, a_run("r2", 45.1, state="failed"))  # marked failed: not counted again
    for key, breach in state.stage_breaches(T0 + 5 * 3600).breaches.items():
        store.save_breaches({key: breach})
    state.evaluate(T0 + 5 * 3600)
    before = samples(state)
    name = "impactwatch_dag_run_duration_seconds_count"
    assert before[(name, (("dag_id", "etl"), ("state", "success"), ("team", "platform")))] == 4
    assert any(k[0] == "impactwatch_sla_breaches_total" for k in before)
    assert any(k[0] == "impactwatch_task_cost_dollars_total" for k in before)
    after = samples(restarted(store))
    assert after == before  # every sample, bit for bit (floats and Decimals kept exactly)
    again = restarted(store)
    write(store, again, a_run("r9", 50.0))
    later = samples(again)
    assert all(later[k] >= v for k, v in before.items())  # and they go on from there


def test_a_kill_between_the_commit_and_the_state_loses_nothing(store: Store) -> None:
    live = MetricsState(CATALOG)
    write(store, live, a_run("r1", 61.3))

    def killed(changes: list[Changes]) -> tuple[Counts, Callable[[], None]]:
        staged = live.stage(changes, T0)
        return staged.counts(), lambda: None  # the process dies once the commit is done

    store.write([(a_run("r2", 907.7), None)], killed)
    expected = MetricsState(CATALOG)  # what the live state would have shown
    for batch in (a_run("r1", 61.3), a_run("r2", 907.7)):
        expected.apply(_changes_of(batch), "poller", T0)
    assert samples(restarted(store)) == samples(expected)
    # and the facts are observed: a second sighting after the restart adds nothing
    state = restarted(store)
    write(store, state, a_run("r2", 907.7))
    assert samples(state) == samples(expected)


def _changes_of(batch: Batch) -> Changes:
    (run,) = batch.dag_runs
    return Changes(
        finished_runs=[(run, batch.task_tries)],
        terminal_runs=[run],
        started_runs=[run],
        queued_tries=batch.task_tries,
        succeeded_tries=batch.task_tries,
    )


def test_a_failed_transaction_counts_nothing(store: Store) -> None:
    state = MetricsState(CATALOG)
    write(store, state, a_run("r1", 61.3))
    before = samples(state)

    def refused(changes: list[Changes]) -> tuple[Counts, Callable[[], None]]:
        staged = state.stage(changes, T0)
        counts = staged.counts()
        counts.series["a row the DB refuses"] = ("etl", None)  # type: ignore[assignment]
        return counts, staged.commit

    (got,) = store.write([(a_run("r2", 907.7), None)], refused)
    assert isinstance(got, Exception)
    assert samples(state) == before  # nothing staged was taken
    assert samples(restarted(store)) == before


def test_stored_series_round_trip_exactly() -> None:
    row = [1.0, 0.0, 3.0, 0.1 + 0.2, 1e-17, 4.0]
    assert persisted.decode_row(persisted.encode_row(row), 4) == row
    costs = DagCosts()
    costs.recent.extend([Decimal("0.1000000000000000000000000001"), Decimal("3")])
    costs.ranking = {"load": Decimal("1.23456789012345678901")}
    costs.series = {"load": Decimal("7.1"), "(other)": Decimal("0.000001")}
    back = persisted.decode_costs(persisted.encode_costs(costs, "m1"))
    assert (list(back.costs.recent), back.costs.ranking, back.costs.series, back.model) == (
        list(costs.recent),
        costs.ranking,
        costs.series,
        "m1",
    )


def test_unreadable_rows_are_counted_and_left_out() -> None:
    name = c.DAG_RUN_COST.name
    good = persisted.encode_row([0.0] * (len(c.DAG_RUN_COST.buckets) + 2))
    restored = persisted.decode_series(
        [
            (persisted.series_key(name, ("etl", "platform")), good),
            (persisted.series_key(name, ("etl", "platform")), "[1, 2]"),  # wrong width
            (persisted.series_key("impactwatch_gone", ("etl",)), good),  # unknown series
            (persisted.series_key(persisted.DAG_COSTS, ("etl",)), "{}"),
            (persisted.series_key(persisted.DAG_COSTS, ("etl",)), "not json"),
        ]
    )
    assert restored.unreadable == 4
    assert list(restored.histograms[name]) == [("etl", "platform")]


def test_costs_priced_with_another_model_are_priced_again() -> None:
    state = MetricsState(CATALOG)
    row = persisted.encode_costs(DagCosts(), "an older model")
    restored = persisted.decode_series([(persisted.series_key(persisted.DAG_COSTS, ("etl",)), row)])
    assert state.restore_counters(restored, [], [], T0) is True
    assert MetricsState(CATALOG).restore_counters(persisted.Restored({}, {}), [], [], T0) is True


def test_breaches_stored_before_their_labels_get_the_catalogs(store: Store) -> None:
    store.save_breaches({"duration|etl|r1|warning": Breach(T0, "platform", "warning",
                                                           "duration", "etl", "")})  # fmt: skip
    counts = [
        *store.breach_counts(),
        ((None, "critical", "freshness", None, "scores"), 2),  # rows migrated from keys
        ((None, "warning", "deadline", "etl", ""), 1),
    ]
    state = MetricsState(CATALOG)
    state.restore_counters(persisted.Restored({}, {}), counts, [], T0)
    assert state.breaches == {
        ("platform", "warning", "duration", "etl", ""): 1,
        ("risk", "critical", "freshness", "etl", "scores"): 2,
        ("platform", "warning", "deadline", "etl", ""): 1,
    }
