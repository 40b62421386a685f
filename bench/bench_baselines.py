"""Cost of the learned baselines at 10,000 DAGs (collector/baselines, metrics/state.py).

Learns 32 successful runs of 5 tasks for each of 10,000 DAGs (hourly and daily, weekday and
weekend), then times what the writer does per poll cycle with 300 runs in flight: learning a
cycle's finished runs, predicting, counting breaches against learned thresholds (only the data
products whose limit has passed and the DAGs past their usual start are looked at:
metrics/due.py); then the clock-driven part of /metrics, and a whole /metrics through the
cached exposition after a poll cycle that changed the runs in flight and the 300 data products
they made (learned limits are kept per DAG for its oldest run in flight and per data product,
rendered again only when they change). Prints figure beside target.
The machine is shared: absolute timings vary with other work on it.

    PYTHONPATH=. .venv/bin/python bench/bench_baselines.py
"""

from __future__ import annotations

import resource
import time

from prometheus_client import CollectorRegistry, generate_latest

from impactwatch.catalog.model import Catalog
from impactwatch.collector.events import DagRun, TaskTry
from impactwatch.collector.metrics.exporter import ImpactwatchCollector
from impactwatch.collector.metrics.exposition import CachedExposition
from impactwatch.collector.metrics.state import DagInfo, MetricsState

DAGS, TASKS, RUNS, IN_FLIGHT = 10_000, 5, 32, 300
T0 = 1_799_020_800.0  # a Monday, 00:00 UTC
NOW = T0 + 40 * 86400.0  # the poll cycles' time: each DAG's latest run one interval before


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(dag: int, i: int) -> tuple[DagRun, list[TaskTry]]:
    step = 3600.0 if dag % 4 == 0 else 86400.0
    start = NOW - (RUNS - i) * step + (dag % 60) * 60  # the last one about an interval ago
    took = 600.0 + (i * 37 % 120)
    r = DagRun(dag_id=f"dag{dag}", run_id=f"r{i}", state="success", start=start, end=start + took)
    tries = [
        TaskTry(
            dag_id=r.dag_id,
            run_id=r.run_id,
            task_id=f"t{k}",
            map_index=-1,
            try_number=1,
            state="success",
            start=start + k * took / TASKS,
            end=start + (k + 1) * took / TASKS,
            queued=start + k * took / TASKS - 3,
            pool="default_pool",
        )
        for k in range(TASKS)
    ]
    return r, tries


def main() -> None:
    catalog = Catalog.model_validate(  # a data product per DAG, no limits: all learned
        {
            "teams": {"p": {"slack_channel": "#p"}},
            "defaults": {"team": "p"},
            "datasets": {f"ds{d}": {"produced_by": f"dag{d}.t{TASKS - 1}"} for d in range(DAGS)},
        }
    )
    state = MetricsState(catalog)
    state.set_dags({f"dag{d}": DagInfo() for d in range(DAGS)})
    before = rss_mb()
    for i in range(RUNS):
        with state.lock:
            state.learn(run(d, i) for d in range(DAGS))
    grown = rss_mb() - before
    now = NOW
    state.set_running({(f"dag{d}", "live"): now - 300 for d in range(IN_FLIGHT)})
    cycle = [run(d, RUNS + 1) for d in range(IN_FLIGHT)]  # a cycle's finished runs
    timings = []
    for _ in range(10):
        started = time.perf_counter()
        with state.lock:
            state.learn(cycle)
        state.evaluate(now)
        timings.append(time.perf_counter() - started)
    timings.sort()
    per_cycle = timings[len(timings) // 2] * 1000
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ImpactwatchCollector(state, lambda: now, part="rest"))
    started = time.perf_counter()
    generate_latest(registry)
    scrape = time.perf_counter() - started
    # The whole /metrics as served (metrics/exposition.py): rendered once, then a poll cycle
    # in which the 300 runs in flight are new ones (their learned limits change), then a scrape.
    exposition = CachedExposition(state, lambda: now)
    exposition.refresh()
    with state.lock:
        state.learn(cycle)
    state.set_running({(f"dag{d}", "next"): now - 60 for d in range(IN_FLIGHT)})
    started = time.perf_counter()
    body = exposition.render()
    warm = time.perf_counter() - started
    learned = body.count(b'source="learned"')
    rows = [
        ("RSS growth, baselines of 10,000 DAGs x 5 tasks (MB)", grown, "< 50"),
        ("learn + predict + evaluate per poll cycle, 300 in flight (ms, p50)", per_cycle, "< 20"),
        ("clock-driven part of /metrics (ms)", scrape * 1000, "-"),
        (f"/metrics after that cycle ({learned} learned limits) (ms)", warm * 1000, "< 1000"),
    ]
    print(f"{'what':58} {'figure':>10} {'target':>10}")
    for what, figure, target in rows:
        print(f"{what:58} {figure:10.1f} {target:>10}")


if __name__ == "__main__":
    main()
