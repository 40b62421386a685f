"""Cost benchmark: pricing finished runs live, restoring cost history at start, a reconciliation's
estimate. Synthetic state DB (SQLite, the default), no Airflow needed.

- pricing: `Pricing.task_costs` over finished runs of 25 tries, as `MetricsState.apply` does
  for every run a poll cycle sees finish (half the tries measured by the listener);
- restart: `Store.summary()` and `MetricsState.restore` with the cost history (each DAG's 21
  latest runs priced, through the database's sums), at DAGS x 21 runs x 25 tries;
- reconcile: `cost_by_dag_and_day` for one UTC day of hourly DAGs (24 runs x 25 tries each,
  one run crossing midnight per DAG).

    .venv/bin/python bench/bench_cost.py              # 1,000 DAGs (~1 min)
    .venv/bin/python bench/bench_cost.py --dags 10000 # the collector's scale target (~10 min)
"""

from __future__ import annotations

import argparse
import resource
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import report

from impactwatch.catalog.model import Catalog
from impactwatch.collector.cost.history import cost_by_dag_and_day, load_cost_history
from impactwatch.collector.cost.pricing import Pricing
from impactwatch.collector.cost.tracking import COST_HISTORY_RUNS
from impactwatch.collector.events import TaskTry
from impactwatch.collector.metrics.state import MetricsState
from impactwatch.collector.state.store import Store, make_engine

SEP = "\x1f"
TASKS = 25
DAY = date(2026, 11, 23)
MIDNIGHT = datetime.combine(DAY, datetime.min.time(), UTC).timestamp()
CATALOG = Catalog.model_validate(
    {
        "pipelines": {f"dag_{d}": {"cost_basis": "reserved"} for d in range(0, 10_000, 4)},
        "cost": {"pools": {"heavy_etl": {"cpu": 6, "memory_gb": 12}}},
    }
)
TRY_SQL = (
    "insert into iw_task_try (k, run_k, dag_id, run_id, task_id, map_index, try_number, state,"
    " start, end_, duration, pool, queue, cpu_seconds, peak_rss_bytes, observed)"
    " values (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,0)"
)
RUN_SQL = (
    "insert into iw_dag_run (k, dag_id, run_id, state, run_type, logical_date, run_after,"
    " start, end_, clear_number, observed) values (?,?,?,?,?,?,?,?,?,?,1)"
)


def seed(path: Path, dags: int, runs: int, first_end: float) -> int:
    """`runs` hourly runs per DAG ending at first_end, first_end + 1h, ...; 25 tries each."""
    Store(make_engine(f"sqlite:///{path}")).engine.dispose()
    conn = sqlite3.connect(path)
    tries, run_rows, count = [], [], 0
    for d in range(dags):
        dag = f"dag_{d}"
        for r in range(runs):
            run_id, end = f"scheduled__{r}", first_end + r * 3600
            run_k = dag + SEP + run_id
            run_rows.append(
                (run_k, dag, run_id, "success", "scheduled", end, end, end - 900, end, 0)
            )
            for k in range(TASKS):
                measured = k % 2 == 0
                tries.append(
                    (SEP.join((dag, run_id, f"t{k}", "-1", "1")), run_k, dag, run_id, f"t{k}",
                     -1, 1, "success", end - 900, end - 30, 870.0,
                     "heavy_etl" if k == 0 else "default_pool", "default",
                     12.5 if measured else None, 2.5e8 if measured else None)
                )  # fmt: skip
            count += TASKS
        if len(tries) > 200_000:
            conn.executemany(TRY_SQL, tries)
            tries = []
    conn.executemany(TRY_SQL, tries)
    conn.executemany(RUN_SQL, run_rows)
    conn.commit()
    conn.close()
    return count


def bench_pricing(verdicts: report.Verdicts) -> list[list[object]]:
    pricing = Pricing(CATALOG)
    runs = [
        [
            TaskTry(dag_id=f"dag_{d}", run_id="r", task_id=f"t{k}", map_index=-1, try_number=1,
                    state="success", start=0.0, end=870.0, duration=870.0,
                    pool="default_pool", cpu_seconds=12.5 if k % 2 else None, peak_rss_bytes=2**28)
            for k in range(TASKS)
        ]
        for d in range(2000)
    ]  # fmt: skip
    started = time.perf_counter()
    for tries in runs:
        pricing.task_costs(tries)
    took = time.perf_counter() - started
    per_second = len(runs) * TASKS / took
    verdicts.add("pricing, tries/s", f"{per_second:,.0f}", ">= 100,000", per_second >= 100_000)
    return [["price 2,000 finished runs (50,000 tries)", report.ms(took), f"{per_second:,.0f}/s"]]


def bench_restart(dags: int, verdicts: report.Verdicts) -> list[list[object]]:
    with tempfile.TemporaryDirectory(prefix="iw-bench-cost-") as folder:
        path = Path(folder) / "state.db"
        count = seed(path, dags, 21, MIDNIGHT)
        store = Store(make_engine(f"sqlite:///{path}"))
        started = time.perf_counter()
        summary = store.summary()
        state = MetricsState(CATALOG)
        state.restore(summary, partial(load_cost_history, store.engine, per_dag=COST_HISTORY_RUNS))
        took = time.perf_counter() - started
        assert len(state.costs.dags) == dags
        store.close()
    budget = 5.0 * dags / 1000
    verdicts.add(
        f"start with cost history, {dags:,} DAGs", f"{took:.1f} s", f"<= {budget:g} s",
        took <= budget,
    )  # fmt: skip
    return [[f"summary + restore: {dags:,} DAGs x 21 runs ({count:,} tries)", f"{took:.2f} s", ""]]


def bench_reconcile(dags: int, verdicts: report.Verdicts) -> list[list[object]]:
    with tempfile.TemporaryDirectory(prefix="iw-bench-cost-") as folder:
        path = Path(folder) / "state.db"
        count = seed(path, dags, 25, MIDNIGHT + 600)  # runs end 00:10 .. 00:10 next day
        engine = make_engine(f"sqlite:///{path}")
        started = time.perf_counter()
        estimates = cost_by_dag_and_day(engine, Pricing(CATALOG), [DAY])
        took = time.perf_counter() - started
        engine.dispose()
    assert len(estimates) == dags and all(v[DAY] > Decimal(0) for v in estimates.values())
    budget = 10.0 * dags / 1000
    verdicts.add(
        f"reconcile one day, {dags:,} hourly DAGs", f"{took:.1f} s", f"<= {budget:g} s",
        took <= budget,
    )  # fmt: skip
    return [
        [f"estimate one UTC day: {dags:,} DAGs x 25 runs ({count:,} tries)", f"{took:.2f} s", ""]
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dags", type=int, default=1000)
    args = parser.parse_args()
    verdicts = report.Verdicts()
    rows = bench_pricing(verdicts)
    rows += bench_restart(args.dags, verdicts)
    rows += bench_reconcile(args.dags, verdicts)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows.append(["peak RSS of this process", f"{rss:.0f} MB", ""])
    print(report.table("Cost benchmark", ("what", "time", "rate"), rows))
    print()
    print(verdicts.render("Cost benchmark: results"))


if __name__ == "__main__":
    main()
