"""Learned baselines (collector/baselines): pure, no servers."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from impactwatch.catalog.model import Catalog
from impactwatch.collector.baselines.cadence import MIN_EVENTS, MIN_SLACK, Cadence
from impactwatch.collector.baselines.durations import (
    MIN_BUCKET_RUNS,
    MIN_RUNS,
    RunDurations,
    TaskTimes,
)
from impactwatch.collector.baselines.seasons import DAY, bucket, is_weekend
from impactwatch.collector.baselines.thresholds import learned_max_duration
from impactwatch.collector.baselines.window import Window, quantile
from impactwatch.collector.events import Batch, DagRun, TaskTry
from impactwatch.collector.metrics.exporter import ImpactwatchCollector
from impactwatch.collector.metrics.state import MetricsState
from impactwatch.collector.state.store import Changes, Store, make_engine

MONDAY = 1_799_020_800.0  # 2027-01-04 00:00 UTC, a Monday
H = 3600.0


def test_window_keeps_the_last_values_and_their_quantiles() -> None:
    w = Window(4)
    for v in (100.0, 1.0, 2.0, 3.0, 4.0):
        w.add(v)
    assert sorted(w.values) == [1.0, 2.0, 3.0, 4.0]
    assert w.median() == 2.5
    assert w.p90() == pytest.approx(3.7)
    assert quantile([5.0], 0.9) == 5.0


def test_seasons_split_weekdays_from_weekends() -> None:
    assert not is_weekend(MONDAY)
    assert is_weekend(MONDAY + 5 * DAY) and is_weekend(MONDAY + 6 * DAY + 23 * H)
    assert bucket(MONDAY + 6 * H) == 6
    assert bucket(MONDAY + 5 * DAY + 6 * H) == 30


def test_run_durations_use_the_seasonal_bucket_once_it_has_enough_runs() -> None:
    d = RunDurations()
    for day in range(MIN_RUNS - 1):
        d.add(MONDAY + day * DAY + 6 * H, 600.0)
    assert d.usual(MONDAY + 6 * H) is None  # learning: no learned value yet
    for week in range(2):  # Saturday 06:00 runs take an hour
        d.add(MONDAY + (week * 7 + 5) * DAY + 6 * H, 3600.0)
    weekday = d.usual(MONDAY + 7 * DAY + 6 * H)
    assert weekday is not None and weekday.seasonal and weekday.median == 600.0
    saturday = d.usual(MONDAY + 12 * DAY + 6 * H)
    assert saturday is not None and not saturday.seasonal  # 2 < MIN_BUCKET_RUNS: all runs
    for week in range(2, 2 + MIN_BUCKET_RUNS):
        d.add(MONDAY + (week * 7 + 5) * DAY + 6 * H, 3600.0)
    saturday = d.usual(MONDAY + 40 * DAY + 6 * H)
    assert saturday is not None and saturday.seasonal and saturday.median == 3600.0


def test_task_times_hold_medians_of_duration_and_offsets() -> None:
    t = TaskTimes()
    t.add(60.0, 0.0, 60.0)
    t.add(80.0, 10.0, 90.0)
    assert t.stats() is None
    for _ in range(20):
        t.add(100.0, 20.0, 120.0)
    assert len(t) == 16
    assert t.stats() == (100.0, 100.0, 20.0, 120.0)


def test_learned_max_duration_is_past_the_p90_and_the_median_by_a_margin() -> None:
    d = RunDurations()
    for i in range(10):
        d.add(MONDAY + i * H, 1000.0 + i * 100)
    usual = d.usual(MONDAY)
    assert usual is not None
    limit = learned_max_duration(usual)
    assert limit == pytest.approx(1.5 * usual.p90)
    assert learned_max_duration(None) is None


def daily(cadence: Cadence, days: int, at: float, weekends: bool, noise: float = 0.0) -> None:
    rng = random.Random(7)
    for day in range(days):
        moment = MONDAY + day * DAY
        if weekends or not is_weekend(moment):
            cadence.add(moment + at + rng.uniform(-noise, noise))


def test_a_daily_product_is_usually_updated_by_its_time_of_day_on_working_days() -> None:
    c = Cadence()
    daily(c, 5, 6 * H, weekends=False)
    assert c.usual() is None and c.expected(MONDAY) is None  # fewer than MIN_EVENTS
    c = Cadence()
    daily(c, 28, 6 * H + 600, weekends=False, noise=300)
    usual = c.usual()
    assert usual is not None and usual.daily and usual.active == (True, False)
    friday = MONDAY + 25 * DAY + 6 * H
    found = c.expected(friday)
    assert found is not None
    # Next update: Monday (no weekend runs), by the usual time of day plus a tolerance.
    monday = MONDAY + 28 * DAY
    assert monday + 6 * H + 600 < found.by <= monday + 6 * H + 900
    assert found.limit - found.by >= MIN_SLACK


def test_an_hourly_product_is_late_past_its_usual_interval_and_a_margin() -> None:
    c = Cadence()
    for i in range(MIN_EVENTS + 10):
        c.add(MONDAY + i * H)
    found = c.expected(MONDAY + 100 * H)
    assert found is not None
    assert found.by == MONDAY + 101 * H
    assert found.limit == MONDAY + 101 * H + MIN_SLACK


def _run(dag_id: str, start: float, took: float, state: str = "success") -> DagRun:
    return DagRun(dag_id=dag_id, run_id=f"r{start:.0f}", state=state, start=start, end=start + took)


def _try(run: DagRun, task_id: str, start: float, end: float) -> TaskTry:
    return TaskTry(
        dag_id=run.dag_id,
        run_id=run.run_id,
        task_id=task_id,
        map_index=-1,
        try_number=1,
        state="success",
        start=start,
        end=end,
        queued=start - 5,
    )


EMPTY = Catalog.model_validate(
    {
        "teams": {"risk": {"slack_channel": "#r"}},
        "defaults": {"team": "risk"},
        "datasets": {"scores": {"produced_by": "etl.publish"}},
    }
)


def scrape(state: MetricsState, now: float) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ImpactwatchCollector(state, clock=lambda: now))
    return registry


def test_empty_catalog_gets_learned_freshness_and_duration_alerts_from_history() -> None:
    state = MetricsState(EMPTY)
    history = []
    for day in range(21):
        start = MONDAY + day * DAY + 6 * H
        run = _run("etl", start, 1200.0)
        history.append((run, [_try(run, "publish", start + 600, start + 1200)]))
    state.learn(history)
    now = MONDAY + 21 * DAY + 6 * H  # 06:00 on day 22: the last update was 06:20 yesterday
    state.apply(Changes(succeeded_tries=[history[-1][1][0]]), "poller", now)
    reg = scrape(state, now)
    labels = {"dataset": "scores", "team": "risk", "tier": "standard"}
    limit = reg.get_sample_value(
        "impactwatch_dataset_freshness_sla_seconds", {**labels, "source": "learned"}
    )
    assert limit == pytest.approx(DAY + MIN_SLACK)  # usually by 06:20, late past 06:35
    assert reg.get_sample_value(
        "impactwatch_dataset_usual_update_by_timestamp_seconds", labels
    ) == pytest.approx(now + 1200)
    assert state.evaluate(now + 1200 + MIN_SLACK - 60) == {}
    fired = state.evaluate(now + 1200 + MIN_SLACK + 60)
    assert [k.split("|")[0] for k in fired] == ["freshness"]
    # A run in flight past 1.5 x its usual p90 (20 min -> 30 min) breaches its learned limit.
    state.set_running({("etl", "late"): now})
    reg = scrape(state, now + 10 * 60)
    dag = {"dag_id": "etl", "team": "risk"}
    assert reg.get_sample_value(
        "impactwatch_dag_run_max_duration_seconds", {**dag, "source": "learned"}
    ) == pytest.approx(1800.0)
    assert reg.get_sample_value(
        "impactwatch_dag_run_usual_duration_seconds", {**dag, "quantile": "0.5"}
    ) == pytest.approx(1200.0)
    assert reg.get_sample_value("impactwatch_dag_baseline_runs", dag) == 21
    assert not [k for k in state.evaluate(now + 29 * 60) if k.startswith("duration")]
    assert [k for k in state.evaluate(now + 31 * 60) if k.startswith("duration")]


def test_a_product_is_checked_again_when_its_update_or_the_catalog_moves_its_limit() -> None:
    state = MetricsState(EMPTY)
    history = []
    for day in range(21):
        start = MONDAY + day * DAY + 6 * H
        run = _run("etl", start, 1200.0)
        history.append((run, [_try(run, "publish", start + 600, start + 1200)]))
    state.learn(history)
    now = MONDAY + 21 * DAY + 6 * H
    state.apply(Changes(succeeded_tries=[history[-1][1][0]]), "poller", now)
    late = now + 1200 + MIN_SLACK + 60
    assert [k.split("|")[0] for k in state.evaluate(late)] == ["freshness"]
    # Today's update arrives: the next limit is tomorrow's, nothing is late now.
    run = _run("etl", now + 30 * 60, 1200.0)
    today = _try(run, "publish", now + 40 * 60, now + 50 * 60)
    state.apply(Changes(finished_runs=[(run, [today])], succeeded_tries=[today]), "p", now + 3000)
    assert state.evaluate(late + 3600) == {}
    # A catalog freshness wins and moves the limit at once: 2 h after today's update.
    state.set_catalog(
        Catalog.model_validate(
            {
                "teams": {"risk": {"slack_channel": "#r"}},
                "defaults": {"team": "risk"},
                "datasets": {"scores": {"produced_by": "etl.publish", "freshness": "2h"}},
            }
        )
    )
    assert state.evaluate(now + 50 * 60 + 2 * H - 60) == {}
    fired = state.evaluate(now + 50 * 60 + 2 * H + 60)
    assert [k.split("|")[0] for k in fired] == ["freshness"]


def test_the_catalog_wins_over_what_is_learned() -> None:
    catalog = Catalog.model_validate(
        {
            "teams": {"risk": {"slack_channel": "#r"}},
            "defaults": {"team": "risk"},
            "datasets": {"scores": {"produced_by": "etl.publish", "freshness": "2h"}},
            "pipelines": {"etl": {"max_duration": "1h"}},
        }
    )
    state = MetricsState(catalog)
    history = []
    for day in range(21):
        start = MONDAY + day * DAY + 6 * H
        run = _run("etl", start, 1200.0)
        history.append((run, [_try(run, "publish", start + 600, start + 1200)]))
    state.learn(history)
    now = MONDAY + 21 * DAY
    state.apply(Changes(succeeded_tries=[history[-1][1][0]]), "poller", now)
    reg = scrape(state, now)
    labels = {"dataset": "scores", "team": "risk", "tier": "standard"}
    assert (
        reg.get_sample_value(
            "impactwatch_dataset_freshness_sla_seconds", {**labels, "source": "catalog"}
        )
        == 7200
    )
    assert (
        reg.get_sample_value(
            "impactwatch_dataset_freshness_sla_seconds", {**labels, "source": "learned"}
        )
        is None
    )
    dag = {"dag_id": "etl", "team": "risk"}
    assert (
        reg.get_sample_value(
            "impactwatch_dag_run_max_duration_seconds", {**dag, "source": "catalog"}
        )
        == 3600
    )
    assert (
        reg.get_sample_value(
            "impactwatch_dag_run_max_duration_seconds", {**dag, "source": "learned"}
        )
        is None
    )


def test_baselines_stay_bounded_and_forget_gone_dags() -> None:
    state = MetricsState(EMPTY)
    runs = []
    for i in range(500):
        start = MONDAY + i * H
        run = _run("etl", start, 600.0)
        runs.append((run, [_try(run, f"t{i % 3}", start, start + 60)]))
    state.learn(runs)
    b = state.baselines
    assert len(b.runs["etl"]) == 32 and len(b.tasks) == 3
    assert all(len(t) == 16 for t in b.tasks.values())
    assert len(b.starts["etl"]) == 48
    assert len(b.pools["default_pool"].window) == 256
    from impactwatch.collector.metrics.state import DagInfo

    state.set_dags({"etl": DagInfo()})
    state.set_dags({"other": DagInfo()})
    assert not b.runs and not b.tasks and not b.starts


def test_history_from_the_state_db_learns_what_the_writer_would(tmp_path: Path) -> None:
    store = Store(make_engine(f"sqlite:///{tmp_path / 'state.db'}"))
    runs = []
    for day in range(10):
        start = MONDAY + day * DAY + 6 * H
        run = _run("etl", start, 1200.0)
        runs.append(run)
        store.ingest(
            Batch(task_tries=[_try(run, "publish", start + 600, start + 1200)], dag_runs=[run])
        )
    chunks = list(store.history(MONDAY + 3 * DAY, chunk=3))
    assert [len(runs) for runs, _ in chunks] == [3, 3, 1, 0]
    state = MetricsState(EMPTY)
    for got, assets in chunks:
        state.learn(got, assets)
    assert len(state.baselines.runs["etl"]) == 7
    assert len(state.baselines.updates["task\x1fetl\x1fpublish"]) == 7
    assert len(state.baselines.tasks[("etl", "publish")]) == 7
    store.close()


def test_learned_duration_limits_are_kept_by_the_writer_not_the_scrape() -> None:
    """The learned limit of a DAG's oldest run in flight is computed when runs start, end or
    are learned, and marks the DAG for the exposition; a scrape only reads it."""
    state = MetricsState(EMPTY)
    state.learn((_run("etl", MONDAY + d * DAY + 6 * H, 1200.0), []) for d in range(21))
    assert state.learned_durations == {}  # no run in flight: nothing to hold to a limit
    state.take_dirty()
    start = MONDAY + 21 * DAY + 6 * H
    state.set_running({("etl", "now"): start})
    assert state.learned_durations["etl"].limit == pytest.approx(1800.0)
    assert state.take_dirty() == {"etl"}
    state.set_running({("etl", "now"): start})  # the same runs: nothing recomputed or marked
    assert state.take_dirty() == set()
    # A slower run learned: the limit moves, and the DAG is marked again.
    state.learn([(_run("etl", MONDAY + 22 * DAY + 6 * H, 3000.0), [])])
    assert state.learned_durations["etl"].limit > 1800.0
    assert state.take_dirty() == {"etl"}
    # A catalog max_duration wins: the learned one goes.
    state.set_catalog(
        Catalog.model_validate(
            {
                "teams": {"risk": {"slack_channel": "#r"}},
                "defaults": {"team": "risk"},
                "pipelines": {"etl": {"max_duration": "1h"}},
            }
        )
    )
    assert state.learned_durations == {}
    state.set_catalog(EMPTY)
    assert "etl" in state.learned_durations
    state.set_running({})
    assert state.learned_durations == {}
