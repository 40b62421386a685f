"""Costs read back from a (SQLite) state DB, summed by the database: they must equal pricing
every try one by one."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from impactwatch.catalog.model import Catalog
from impactwatch.collector.cost.history import RANKING_RUNS, cost_by_dag_and_day, cost_history
from impactwatch.collector.cost.pricing import Pricing
from impactwatch.collector.events import Batch, DagRun, TaskTry
from impactwatch.collector.state.store import Store, make_engine

DAY = date(2026, 11, 23)
MIDNIGHT = datetime.combine(DAY, datetime.min.time(), UTC).timestamp()
CATALOG = Catalog.model_validate(
    {
        "pipelines": {"etl": {"cost_basis": "reserved"}, "scores": {}},
        "cost": {
            "pool_rates": {"big": {"cpu_hour": "0.09", "memory_gb_hour": "0.01"}},
            "pools": {"big": {"cpu": 4, "memory_gb": 16}},
            "tasks": {"scores.train": {"cpu": 8, "memory_gb": 32}},
        },
    }
)
PRICING = Pricing(CATALOG)


def random_tries(rng: random.Random, dag_id: str, run_id: str, end: float) -> list[TaskTry]:
    tries = []
    for n in range(rng.randint(3, 8)):
        task = rng.choice(["train", "load", "score", f"t{n}"])
        seconds = rng.uniform(1, 4000)
        measured = rng.random() < 0.5
        tries.append(
            TaskTry(
                dag_id=dag_id,
                run_id=run_id,
                task_id=task,
                map_index=rng.choice([-1, 0, 1]),
                try_number=rng.randint(1, 3),
                state="success",
                start=end - seconds if rng.random() < 0.9 else None,
                end=end,
                duration=seconds if rng.random() < 0.8 else None,
                pool=rng.choice(["big", "default_pool", None]),
                queue=rng.choice(["q", None]),
                cpu_seconds=rng.uniform(0, seconds) if measured else None,
                peak_rss_bytes=rng.randint(2**20, 2**33) if measured else None,
                requested_cpu=rng.choice([None, 0.5, 2.0]),
                requested_memory_bytes=rng.choice([None, 2**30]),
            )
        )
    # keys must be unique in a run
    return list({t.key: t for t in tries}.values())


@pytest.fixture
def filled(tmp_path: Path) -> tuple[Store, dict[str, list[tuple[float, list[TaskTry]]]]]:
    rng = random.Random(7)
    store = Store(make_engine(f"sqlite:///{tmp_path / 'state.db'}"))
    runs: dict[str, list[tuple[float, list[TaskTry]]]] = {"etl": [], "scores": []}
    batch = Batch()
    for dag_id in runs:
        for n in range(25):
            end = MIDNIGHT + rng.uniform(-6 * 3600, 30 * 3600)
            run_id = f"r{n}"
            tries = random_tries(rng, dag_id, run_id, end)
            runs[dag_id].append((end, tries))
            batch.task_tries += tries
            batch.dag_runs.append(
                DagRun(
                    dag_id=dag_id,
                    run_id=run_id,
                    state="success",
                    run_type="manual",
                    logical_date=None,
                    run_after=end,
                    queued_at=end,
                    start=end - 10,
                    end=end,
                )
            )
    store.ingest(batch)
    return store, runs


def test_the_history_matches_pricing_each_try(filled: tuple) -> None:
    store, runs = filled
    with store.engine.connect() as conn:
        history = cost_history(conn, PRICING, 21)
    for dag_id, dag_runs in runs.items():
        latest = sorted(dag_runs, key=lambda r: r[0])[-21:]
        expected = [PRICING.run_cost(tries) for _end, tries in latest]
        got = history[dag_id].totals
        assert len(got) == 21
        assert all(abs(a - b) < Decimal("1e-9") for a, b in zip(got, expected, strict=True))
        ranking: dict[str, Decimal] = {}
        for _end, tries in latest[-RANKING_RUNS:]:
            for task, amount in PRICING.task_costs(tries).items():
                ranking[task] = ranking.get(task, Decimal(0)) + amount
        assert set(history[dag_id].ranking) == set(ranking)
        for task, amount in ranking.items():
            assert abs(history[dag_id].ranking[task] - amount) < Decimal("1e-9"), task


def test_a_days_cost_matches_pricing_each_try_across_midnights(filled: tuple) -> None:
    store, runs = filled
    days = [DAY]
    got = cost_by_dag_and_day(store.engine, PRICING, days)
    for dag_id, dag_runs in runs.items():
        every = [t for _end, tries in dag_runs for t in tries]
        expected = PRICING.cost_by_day(every).get(DAY, Decimal(0))
        assert expected > 0
        assert abs(got[dag_id][DAY] - expected) < Decimal("1e-9"), dag_id
