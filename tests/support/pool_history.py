"""A seeded pool history with the pattern of the article impactwatch grew from: heavy ETL at
night (02:00-06:00, a critical pipeline with a 06:00 deadline among it), API calls and light
transforms in business hours (weekdays 09:00-17:00), little else; run under static pool sizes
too small for either peak, so tries wait (contention). Used by the pools tests and
bench/bench_pools.py.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, insert

from impactwatch.pools.replay import replay
from impactwatch.pools.usage import HOUR, HOURS_PER_WEEK, HourOfWeek, PoolTry

MONDAY = datetime(2026, 1, 5, tzinfo=UTC).timestamp()  # a Monday, 00:00 UTC

# The article's static fallback sizes ("off-peak") as the pools' configured sizes.
STATIC = {"heavy_etl": 4, "light_transforms": 8, "external_apis": 10}

CATALOG: dict[str, Any] = {
    "pipelines": {
        "risk_scoring": {"tier": "critical", "deadline": "06:00 UTC", "max_duration": "4h"},
        "warehouse_load": {"tier": "standard"},
        "customer_api_sync": {"tier": "critical", "max_duration": "30m"},
        "partner_webhooks": {"tier": "standard"},
        "report_refresh": {"tier": "high", "max_duration": "1h"},
        "adhoc_transforms": {"tier": "standard"},
    },
    "cost": {
        "pools": {
            "heavy_etl": {"cpu": 6, "memory_gb": 12},
            "light_transforms": {"cpu": 1, "memory_gb": 2},
            "external_apis": {"cpu": 0.5, "memory_gb": 1},
        }
    },
}


@dataclass(frozen=True)
class Load:
    """Tries arriving in a pool: `rate` per hour during `hours` of `days`, lasting
    `minutes` (uniform), from `dags` (picked at random)."""

    pool: str
    days: tuple[int, ...]
    hours: tuple[int, int]
    rate: float
    minutes: tuple[float, float]
    dags: tuple[str, ...]


EVERY_DAY, WEEKDAYS = tuple(range(7)), (0, 1, 2, 3, 4)
LOADS = (
    # heavy ETL: ~5 at once at night (rate x mean duration), ~1 by day
    Load("heavy_etl", EVERY_DAY, (2, 6), 10.0, (20, 40), ("risk_scoring", "warehouse_load")),
    Load("heavy_etl", EVERY_DAY, (8, 20), 1.5, (20, 40), ("warehouse_load",)),
    # API calls: ~10 at once in business hours, ~1 otherwise
    Load("external_apis", WEEKDAYS, (9, 17), 100.0, (4, 8), ("customer_api_sync",)),
    Load("external_apis", EVERY_DAY, (0, 24), 10.0, (4, 8), ("partner_webhooks",)),
    # light transforms: ~8 in business hours, ~2 otherwise
    Load("light_transforms", WEEKDAYS, (9, 17), 24.0, (10, 20), ("report_refresh",)),
    Load("light_transforms", EVERY_DAY, (0, 24), 8.0, (10, 20), ("adhoc_transforms",)),
)


def arrivals(
    weeks: int, seed: int, loads: tuple[Load, ...] = LOADS, start: float = MONDAY
) -> list[PoolTry]:
    """Demand only: each try's queued time and duration (start = queued, end = start + d)."""
    rng = random.Random(seed)
    out = []
    for day in range(weeks * 7):
        midnight = start + day * 86400
        for load in loads:
            if day % 7 not in load.days:
                continue
            t = midnight + load.hours[0] * HOUR
            stop = midnight + load.hours[1] * HOUR
            while True:
                t += rng.expovariate(load.rate) * HOUR
                if t >= stop:
                    break
                d = rng.uniform(*load.minutes) * 60
                out.append(PoolTry(load.pool, rng.choice(load.dags), t, t, t + d))
    return out


def under_static(
    demand: list[PoolTry], static: dict[str, int], hours: HourOfWeek | None = None
) -> list[PoolTry]:
    """The history the demand makes under static sizes: starts delayed by the replayed wait
    (the shape of waits a real Airflow pool gives), CPU and memory made up per pool."""
    hours = hours or HourOfWeek()
    out = []
    for pool in sorted({t.pool for t in demand}):
        tries = [t for t in demand if t.pool == pool]
        waits = replay(tries, [static[pool]] * HOURS_PER_WEEK, hours)
        for t, w in zip(tries, waits, strict=True):
            d = t.end - t.start
            out.append(
                PoolTry(
                    pool=pool,
                    dag_id=t.dag_id,
                    queued=t.queued,
                    start=t.queued + w,
                    end=t.queued + w + d,
                    cpu_seconds=0.8 * d,
                    peak_rss_bytes=float(2**30),
                )
            )
    return out


def history(weeks: int = 4, seed: int = 16) -> list[PoolTry]:
    return under_static(arrivals(weeks, seed), STATIC)


def many_pools(pools: int, weeks: int, seed: int, scale: float = 1.0) -> list[PoolTry]:
    """`pools` pools, each with the loads of one of the article's three, `scale` x the rate."""
    kinds = sorted(STATIC)
    loads = []
    for i in range(pools):
        kind = kinds[i % len(kinds)]
        for load in LOADS:
            if load.pool == kind:
                loads.append(
                    Load(
                        f"{kind}_{i}",
                        load.days,
                        load.hours,
                        load.rate * scale,
                        load.minutes,
                        load.dags,
                    )
                )
    static = {f"{kinds[i % len(kinds)]}_{i}": STATIC[kinds[i % len(kinds)]] for i in range(pools)}
    return under_static(arrivals(weeks, seed, tuple(loads)), static)


def rows(tries: list[PoolTry]) -> Iterator[dict[str, Any]]:
    """`iw_task_try` rows of `tries` (one run per DAG and day)."""
    for i, t in enumerate(tries):
        run_id = f"scheduled__{datetime.fromtimestamp(t.queued, UTC):%Y-%m-%d}"
        yield {
            "k": f"{t.dag_id}\x1f{run_id}\x1ft{i}\x1f-1\x1f1",
            "run_k": f"{t.dag_id}\x1f{run_id}",
            "dag_id": t.dag_id,
            "run_id": run_id,
            "task_id": f"t{i}",
            "map_index": -1,
            "try_number": 1,
            "state": "success",
            "queued": t.queued,
            "start": t.start,
            "end_": t.end,
            "duration": t.end - t.start,
            "pool": t.pool,
            "cpu_seconds": t.cpu_seconds,
            "peak_rss_bytes": t.peak_rss_bytes,
            "observed": 3,
        }


def store(engine: Engine, tries: list[PoolTry], chunk: int = 20_000) -> None:
    """Write `tries` into the state DB at `engine` (its schema already created)."""
    from impactwatch.collector.state.schema import task_try_t

    batch = list(rows(tries))
    with engine.begin() as conn:
        for i in range(0, len(batch), chunk):
            conn.execute(insert(task_try_t), batch[i : i + chunk])
