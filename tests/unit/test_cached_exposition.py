"""The cached exposition must say exactly what generate_latest says over the whole state."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from impactwatch.catalog.model import Catalog
from impactwatch.collector.events import AssetUpdate, DagRun, TaskTry
from impactwatch.collector.metrics import exposition
from impactwatch.collector.metrics.exporter import ImpactwatchCollector
from impactwatch.collector.metrics.exposition import CachedExposition
from impactwatch.collector.metrics.state import DagInfo, MetricsState
from impactwatch.collector.state.store import Changes

T0 = 1_795_500_000.0
CATALOG = Catalog.model_validate(
    {
        "teams": {"risk": {"slack_channel": "#r"}, "platform": {"slack_channel": "#p"}},
        "datasets": {"scores": {"team": "risk", "produced_by": "s3://b/s", "freshness": "30m"}},
        "pipelines": {
            "a": {"team": "risk", "max_duration": "10m"},
            "b": {"deadline": "07:00 UTC"},
        },
    }
)


def full(state: MetricsState, now: float) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ImpactwatchCollector(state, clock=lambda: now))
    return generate_latest(registry)


def finished(dag_id: str, run_id: str, start: float, took: float, state: str) -> Changes:
    run = DagRun(
        dag_id=dag_id,
        run_id=run_id,
        state=state,
        run_type="scheduled",
        logical_date=None,
        run_after=start,
        queued_at=start,
        start=start + 1,
        end=start + took,
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
            end=start + took,
            queued=start - 2,
            duration=took,
        )
    ]
    return Changes(
        finished_runs=[(run, tries)], terminal_runs=[run], started_runs=[run], queued_tries=tries
    )


@pytest.mark.parametrize("chunk", [exposition.CHUNK, 1])
def test_cached_and_full_renders_agree_through_every_kind_of_change(
    chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(exposition, "CHUNK", chunk)  # rendered a DAG per hold of the lock too
    state = MetricsState(CATALOG)
    cached = CachedExposition(state, clock=lambda: T0)
    assert cached.render() == full(state, T0)  # empty state
    state.set_dags({"a": DagInfo(), "b": DagInfo(), "c": DagInfo()})
    state.apply(finished("a", "r1", T0 - 900, 700, "success"), "poller", T0)
    state.apply(finished("b", "r1", T0 - 900, 60, "failed"), "poller", T0)
    state.apply(Changes(assets=[AssetUpdate(uri="s3://b/s", timestamp=T0 - 4000)]), "listener", T0)
    state.set_running({("c", "r9"): T0 - 30})
    state.record_xcom([("c", T0 - 10, 2048)], T0)
    state.evaluate(T0)
    assert cached.render() == full(state, T0)
    # incremental: one DAG changes, one is paused, one is deleted
    state.apply(finished("a", "r2", T0 - 100, 50, "failed"), "poller", T0)
    state.set_dags({"a": DagInfo(), "b": DagInfo(paused=True)})
    assert cached.render() == full(state, T0)
    # a catalog change re-renders everything (teams move)
    state.set_catalog(
        Catalog.model_validate({"pipelines": {"a": {"team": "platform"}}, "teams": {}})
    )
    assert cached.render() == full(state, T0)
    assert b'last_failure_timestamp_seconds{dag_id="a",team="platform"}' in cached.render()


def test_cached_products_follow_their_updates_learned_cadence_and_producers() -> None:
    catalog = Catalog.model_validate(
        {
            "teams": {"risk": {"slack_channel": "#r"}},
            "defaults": {"team": "risk"},
            "datasets": {
                "learned": {"produced_by": "a.t"},
                "whole": {"produced_by": "b", "freshness": "1h"},
                "asset": {"produced_by": "s3://b/s"},
            },
        }
    )
    state = MetricsState(catalog)
    cached = CachedExposition(state, clock=lambda: T0)
    state.set_dags({"a": DagInfo(), "b": DagInfo()})
    for day in range(12):  # enough history for a learned cadence of "learned"
        changes = finished("a", f"d{day}", T0 - (12 - day) * 86400, 600, "success")
        changes.succeeded_tries.extend(changes.finished_runs[0][1])
        state.apply(changes, "poller", T0)
        assert cached.render() == full(state, T0)
    learned = b'{dataset="learned",source="learned",team="risk",tier="standard"}'
    assert b"impactwatch_dataset_freshness_sla_seconds" + learned in cached.render()
    state.apply(finished("b", "r1", T0 - 900, 60, "success"), "poller", T0)
    state.apply(Changes(assets=[AssetUpdate(uri="s3://b/s", timestamp=T0 - 40)]), "p", T0)
    assert cached.render() == full(state, T0)
    state.set_dags({"a": DagInfo(paused=True), "b": DagInfo()}, {"s3://b/s": [("b", "w")]})
    assert cached.render() == full(state, T0)
    state.set_catalog(catalog.model_copy(update={"datasets": dict(catalog.datasets)}))
    assert cached.render() == full(state, T0)
