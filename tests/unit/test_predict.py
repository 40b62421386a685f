"""Predicted misses (collector/baselines/predict.py and MetricsState.predict): pure, no servers."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from impactwatch.catalog.model import Catalog
from impactwatch.collector.baselines.predict import NOT_STARTED, pace, pace_unstarted
from impactwatch.collector.baselines.seasons import DAY
from impactwatch.collector.events import DagRun, TaskTry
from impactwatch.collector.metrics.exporter import ImpactwatchCollector
from impactwatch.collector.metrics.state import DagInfo, MetricsState
from impactwatch.collector.state.store import Changes

MIN = 60.0
T0 = 1_799_020_800.0 + 6 * 3600  # a Monday, 06:00 UTC
# risk_scoring: extract ends 10 min after the run starts, score_customers 40, publish 50.
USUAL = {"extract": 10 * MIN, "score_customers": 40 * MIN, "publish": 50 * MIN}


def test_a_run_on_its_usual_pace_ends_when_it_usually_does() -> None:
    got = pace(T0, T0 + 20 * MIN, {"extract": T0 + 10 * MIN}, USUAL, 50 * MIN)
    assert got is not None
    assert got.behind == 0 and got.at == "score_customers"
    assert got.expected_end == T0 + 50 * MIN
    assert got.task_ends == {"score_customers": T0 + 40 * MIN, "publish": T0 + 50 * MIN}


def test_a_late_task_end_puts_the_rest_of_the_run_behind_by_as_much() -> None:
    got = pace(T0, T0 + 30 * MIN, {"extract": T0 + 25 * MIN}, USUAL, 50 * MIN)
    assert got is not None and got.behind == 15 * MIN
    assert got.task_ends["publish"] == T0 + 65 * MIN


def test_a_task_taking_longer_than_usual_pushes_the_end_as_time_passes() -> None:
    """score_customers usually takes 30 min; at 55 min it has run 45: 15 min behind, and the
    expected end moves with every minute it keeps running (a slow task or a stuck queue)."""
    done = {"extract": T0 + 10 * MIN}
    at_55 = pace(T0, T0 + 55 * MIN, done, USUAL, 50 * MIN)
    at_65 = pace(T0, T0 + 65 * MIN, done, USUAL, 50 * MIN)
    assert at_55 is not None and at_65 is not None
    assert at_55.behind == 15 * MIN and at_55.at == "score_customers"
    assert at_55.expected_end == T0 + 65 * MIN
    assert at_65.expected_end == T0 + 75 * MIN
    assert pace(T0, T0 + 35 * MIN, done, USUAL, 50 * MIN).behind == 0  # within its usual step


def test_ahead_of_pace_and_never_before_now() -> None:
    got = pace(T0, T0 + 6 * MIN, {"extract": T0 + 5 * MIN}, USUAL, 50 * MIN)
    assert got is not None and got.behind == -5 * MIN
    assert got.expected_end == T0 + 45 * MIN
    last = pace(T0, T0 + 52 * MIN, dict.fromkeys(USUAL, T0 + 51 * MIN), USUAL, 50 * MIN)
    assert last is not None and last.task_ends == {} and last.expected_end == T0 + 52 * MIN


def test_unknown_tasks_and_no_history() -> None:
    assert pace(T0, T0, {}, {}, 0.0) is None
    got = pace(T0, T0 + MIN, {"not_learned_yet": T0 + MIN}, USUAL, 0.0)
    assert got is not None and got.at == "extract" and got.expected_end == T0 + 50 * MIN


def test_a_run_late_to_start() -> None:
    assert pace_unstarted(T0, T0 - MIN, USUAL, 50 * MIN) is None
    got = pace_unstarted(T0, T0 + 30 * MIN, USUAL, 50 * MIN)
    assert got is not None and got.at == NOT_STARTED and got.behind == 30 * MIN
    assert got.expected_end == T0 + 80 * MIN and got.task_ends["publish"] == T0 + 80 * MIN


CATALOG = Catalog.model_validate(
    {
        "teams": {"risk": {"slack_channel": "#r"}},
        "defaults": {"team": "risk"},
        "datasets": {
            "scores": {"produced_by": "risk_scoring.publish", "freshness": "25h"},
            "learned": {"produced_by": "risk_scoring"},
        },
    }
)


def _history(state: MetricsState, days: int) -> TaskTry:
    last = None
    for day in range(days):
        start = T0 - (days - day) * DAY
        run = DagRun(
            dag_id="risk_scoring",
            run_id=f"d{day}",
            state="success",
            start=start,
            end=start + 50 * MIN,
        )
        tries = [_try(run.run_id, task, start + end) for task, end in USUAL.items()]
        state.learn([(run, tries)])
        last = tries[-1]
    assert last is not None
    return last


def _try(run_id: str, task: str, end: float) -> TaskTry:
    return TaskTry(
        dag_id="risk_scoring",
        run_id=run_id,
        task_id=task,
        map_index=-1,
        try_number=1,
        state="success",
        start=end - 5 * MIN,
        end=end,
        queued=end - 5 * MIN - 3,
    )


def test_the_collector_predicts_when_each_product_of_a_run_in_flight_will_be_updated() -> None:
    state = MetricsState(CATALOG)
    publish = _history(state, 10)
    state.apply(Changes(succeeded_tries=[publish]), "poller", T0 - DAY + 50 * MIN)
    state.set_running({("risk_scoring", "today"): T0})
    state.apply(Changes(succeeded_tries=[_try("today", "extract", T0 + 10 * MIN)]), "poller", T0)
    now = T0 + 55 * MIN  # score_customers running 45 min instead of 30: 15 min behind
    state.evaluate(now)
    scores = state.expected_updates["scores"]
    assert scores.expected == pytest.approx(T0 + 65 * MIN)  # publish: usually 50 min in
    assert scores.due == pytest.approx(T0 - DAY + 50 * MIN + 25 * 3600)
    assert (scores.dag_id, scores.at, scores.behind) == ("risk_scoring", "score_customers", 900)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ImpactwatchCollector(state, clock=lambda: now))
    labels = {"dataset": "scores", "team": "risk", "tier": "standard"}
    assert registry.get_sample_value(
        "impactwatch_dataset_expected_update_timestamp_seconds",
        {**labels, "dag_id": "risk_scoring", "task_id": "score_customers"},
    ) == pytest.approx(T0 + 65 * MIN)
    assert registry.get_sample_value(
        "impactwatch_dag_run_behind_seconds",
        {"dag_id": "risk_scoring", "team": "risk", "task_id": "score_customers"},
    ) == pytest.approx(900)
    # The run ends: no run in flight, and it is not late to start (it ran today).
    ended = DagRun(dag_id="risk_scoring", run_id="today", state="success", start=T0, end=now)
    state.apply(Changes(finished_runs=[(ended, [])], terminal_runs=[ended]), "poller", now)
    state.set_running({})
    state.evaluate(now)
    assert state.expected_updates == {} and state.paces == {}


def test_a_run_that_has_not_started_when_it_usually_does_is_predicted_too() -> None:
    state = MetricsState(CATALOG)
    publish = _history(state, 10)
    state.apply(Changes(succeeded_tries=[publish]), "poller", T0 - DAY + 50 * MIN)
    state.evaluate(T0 - 5 * MIN)
    assert state.paces == {}  # not yet its usual start
    state.evaluate(T0 + 2 * 3600)  # two hours past it, nothing started
    pace_now = state.paces["risk_scoring"]
    assert pace_now.at == NOT_STARTED and pace_now.behind == pytest.approx(2 * 3600)
    assert state.expected_updates["scores"].expected == pytest.approx(T0 + 2 * 3600 + 50 * MIN)
    state.set_dags({"risk_scoring": DagInfo(paused=True)})
    state.evaluate(T0 + 2 * 3600)
    assert state.paces == {}  # a paused DAG is not late to start


def test_a_run_late_to_start_is_not_late_once_it_started_until_its_next_usual_start() -> None:
    state = MetricsState(CATALOG)
    publish = _history(state, 10)
    state.apply(Changes(succeeded_tries=[publish]), "poller", T0 - DAY + 50 * MIN)
    state.evaluate(T0 + 2 * 3600)
    assert "risk_scoring" in state.paces  # late to start
    late = DagRun(
        dag_id="risk_scoring",
        run_id="today",
        state="success",
        start=T0 + 2 * 3600,
        end=T0 + 3 * 3600,
    )
    state.apply(Changes(finished_runs=[(late, [])], terminal_runs=[late]), "poller", T0 + 3 * 3600)
    state.evaluate(T0 + 4 * 3600)
    assert state.paces == {}  # it ran today: not late until tomorrow's usual start
    state.evaluate(T0 + DAY + 3 * 3600)
    assert state.paces["risk_scoring"].at == NOT_STARTED
