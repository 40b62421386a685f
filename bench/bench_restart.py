"""Restart benchmark: a real `impactwatch collector` process started on a PostgreSQL state DB
holding DAGS x RUNS finished runs of TASKS tries each (10,000 x 30 x 20 = 6M tries by default),
with the series a collector would have saved (6 per DAG) and a breach per DAG.

Measured from outside, polling GET /healthz every 20 ms: time from launch to the first HTTP
answer (any status: 503 "starting" counts), and to "restored" (/healthz no longer "starting":
200, or 503 "stale" as the unreachable Airflow DB makes it; /metrics then
serves the restored counters, checked). With `--baseline <commit>`, that commit's collector on
a copy of the same facts (its schema, without the series); there the first answer comes only
after its restore, in the constructor. The Airflow DB is unreachable on purpose: the first
poll fails (counted), which a start must survive, and no poll adds to what is restored.

    .venv/bin/python bench/bench_restart.py                          # 10,000 DAGs, 6M tries
    .venv/bin/python bench/bench_restart.py --dags 1000 --baseline 09d291d
"""

from __future__ import annotations

import argparse
import sys
import time
import urllib.error
import urllib.request
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psycopg
import report
from bench_router_common import ROOT, checkout
from collector_process import TOKEN, code_env
from seed_metadata import admin, create_database, drop_database, dsn

from impactwatch.collector.cost.tracking import DagCosts
from impactwatch.collector.metrics import persisted
from impactwatch.collector.metrics.state import Histogram
from impactwatch.collector.state.schema import MIGRATIONS, make_engine
from impactwatch.collector.state.store import Store
from impactwatch.contract import metrics as c

T0 = 1_795_500_000.0

BASELINE_REVISION = "3f1d2a7c9b01"  # the state DB schema before counters were kept
TARGET_FIRST, TARGET_READY = 2.0, 10.0


def pg_url(name: str) -> str:
    return dsn(name).replace("postgresql://", "postgresql+psycopg://", 1)


def seed_facts(name: str, dags: int, runs: int, tasks: int) -> float:
    """Finished runs and their tries (observed), by SQL on the server, 1,000 DAGs a statement."""
    started = time.perf_counter()
    create_database(name)
    Store(make_engine(pg_url(name))).close()  # this tree's schema, at head
    with psycopg.connect(dsn(name), autocommit=True) as conn:
        for first in range(0, dags, 1000):
            last = min(first + 1000, dags) - 1
            conn.execute(
                "INSERT INTO iw_dag_run (k, dag_id, run_id, state, run_type, logical_date,"
                " run_after, queued_at, start, end_, clear_number, observed)"
                " SELECT 'dag_' || d || chr(31) || 'scheduled__' || r, 'dag_' || d,"
                " 'scheduled__' || r, CASE WHEN r %% 10 = 0 THEN 'failed' ELSE 'success' END,"
                " 'scheduled', at, at, at, at + 5, at + 905, 0, 3"
                " FROM generate_series(%(first)s::int, %(last)s::int) d,"
                " generate_series(0, %(runs)s::int - 1) r,"
                " LATERAL (SELECT %(t0)s::float8 + r * 3600 AS at) t",
                {"t0": T0, "first": first, "last": last, "runs": runs},
            )
            conn.execute(
                "INSERT INTO iw_task_try (k, run_k, dag_id, run_id, task_id, map_index,"
                " try_number, state, start, end_, queued, duration, pool, queue, cpu_seconds,"
                " peak_rss_bytes, observed)"
                " SELECT r.k || chr(31) || 't' || t || chr(31) || '-1' || chr(31) || '1', r.k,"
                " r.dag_id, r.run_id, 't' || t, -1, 1, 'success', r.start + 2, r.end_ - 1,"
                " r.start + 1, r.end_ - r.start - 3, 'default_pool', 'default',"
                " CASE WHEN t %% 2 = 0 THEN 12.5 END, CASE WHEN t %% 2 = 0 THEN 2.5e8 END, 3"
                " FROM iw_dag_run r, generate_series(0, %(tasks)s::int - 1) t"
                " WHERE r.dag_id IN"
                " (SELECT 'dag_' || d FROM generate_series(%(first)s::int, %(last)s::int) d)",
                {"first": first, "last": last, "tasks": tasks},
            )
            print(f"  seeded DAGs {first:,}..{last:,}", file=sys.stderr, flush=True)
        conn.execute("VACUUM ANALYZE")
    return time.perf_counter() - started


def seed_series(name: str, dags: int, runs: int, tasks: int) -> int:
    """The series a collector that counted those runs would have saved, and a breach a DAG."""
    rows: list[tuple[str, str, str]] = []
    for d in range(dags):
        dag, team = f"dag_{d}", "platform"
        duration = Histogram(c.DAG_RUN_DURATION.buckets)
        delay = Histogram(c.DAG_RUN_SCHEDULE_DELAY.buckets)
        queued = Histogram(c.TASK_QUEUED.buckets)
        cost = Histogram(c.DAG_RUN_COST.buckets)
        costs = DagCosts()
        run_cost = Decimal("0.0416") * tasks / 4
        for r in range(runs):
            duration.observe((dag, team, "failed" if r % 10 == 0 else "success"), 900.0)
            delay.observe((dag, team), 5.0)
            for _ in range(tasks):
                queued.observe((dag, team, "default_pool"), 1.0)
            cost.observe((dag, team), float(run_cost))
            costs.recent.append(run_cost)
        costs.ranking = {f"t{t}": run_cost / tasks * 5 for t in range(tasks)}
        costs.series = {f"t{t}": run_cost / tasks * runs for t in range(5)}
        costs.series["(other)"] = run_cost / tasks * runs * (tasks - 5)
        for hist, spec in ((duration, c.DAG_RUN_DURATION), (delay, c.DAG_RUN_SCHEDULE_DELAY),
                           (queued, c.TASK_QUEUED), (cost, c.DAG_RUN_COST)):  # fmt: skip
            for key, value in persisted.histogram_rows(spec.name, hist.series).items():
                rows.append((key, dag, value))
        model = persisted.model_fingerprint(default_cost_model())
        key = persisted.series_key(persisted.DAG_COSTS, (dag,))
        rows.append((key, dag, persisted.encode_costs(costs, model)))
    with psycopg.connect(dsn(name), autocommit=True) as conn:
        with conn.cursor().copy("COPY iw_series (k, dag_id, value) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        conn.execute(
            "INSERT INTO iw_breach (k, at, team, severity, kind, dag_id, dataset)"
            " SELECT 'duration|dag_' || d || '|scheduled__0|warning', %(t0)s::float8, 'platform',"
            " 'warning', 'duration', 'dag_' || d, '' FROM generate_series(0, %(last)s::int) d",
            {"t0": T0, "last": dags - 1},
        )
    return len(rows)


def default_cost_model() -> Any:
    from impactwatch.catalog.loader import load_catalog

    return load_catalog(ROOT / "examples" / "catalog.yaml").cost


def as_baseline(source: str, name: str) -> None:
    """A copy of the facts at the schema before counters were kept (what that version reads)."""
    with admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{source}"')
    from alembic import command

    engine = make_engine(pg_url(name))
    with engine.connect() as conn, conn.begin():
        command.downgrade(MIGRATIONS.config(conn), BASELINE_REVISION)
    engine.dispose()


def start(code: Path | None, state_db: str, work: Path) -> dict[str, float]:
    """Launch the collector (this tree's, or the checkout `code` with its own example catalog);
    seconds to the first HTTP answer and to /healthz past "starting"."""
    import subprocess

    from bench_router_common import _free_port, stop_process

    port = _free_port()
    argv = [
        sys.executable, "-m", "impactwatch.cli", "collector",
        "--airflow-db", "postgresql+psycopg://nobody@127.0.0.1:1/none",
        "--state-db", state_db, "--catalog", str((code or ROOT) / "examples" / "catalog.yaml"),
        "--listen", f"127.0.0.1:{port}", "--poll-interval", "60",
    ]  # fmt: skip
    work.mkdir(parents=True, exist_ok=True)
    log = work / "collector.log"
    env = {**code_env(code), "IMPACTWATCH_TOKEN": TOKEN}
    began = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, cwd=work, stdout=log.open("w"), stderr=subprocess.STDOUT)
    first = ready = float("nan")
    try:
        while time.perf_counter() - began < 600:
            if proc.poll() is not None:
                raise RuntimeError(log.read_text()[-3000:])
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                    pass
                now = time.perf_counter() - began
                first = now if first != first else first
                ready = now
                break
            except urllib.error.HTTPError as refused:
                now = time.perf_counter() - began
                first = now if first != first else first
                if b"starting" not in refused.read():  # 503 "stale": restored, Airflow unreachable
                    ready = now
                    break
            except OSError:
                pass
            time.sleep(0.02)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=60) as resp:
            body = resp.read().decode()
    finally:
        stop_process(proc, work)
    runs = sum(
        float(line.rsplit(" ", 1)[1])
        for line in body.splitlines()
        if line.startswith(c.DAG_RUN_DURATION.series("count"))
    )
    return {"first": first, "ready": ready, "runs": runs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dags", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=30, help="finished runs per DAG")
    parser.add_argument("--tasks", type=int, default=20, help="tries per run")
    parser.add_argument("--baseline", metavar="COMMIT", help="also start that commit's collector")
    parser.add_argument("--keep", action="store_true", help="keep the seeded databases")
    args = parser.parse_args(argv)
    name = f"iw_bench_restart_{args.dags}_{args.runs}_{args.tasks}"
    tries = args.dags * args.runs * args.tasks
    verdicts = report.Verdicts()
    rows: list[list[object]] = []
    drop_database(name)
    seeded = seed_facts(name, args.dags, args.runs, args.tasks)
    series = seed_series(name, args.dags, args.runs, args.tasks)
    note = f"seeded {args.dags:,} DAGs x {args.runs} runs x {args.tasks} tries = {tries:,}"
    print(f"{note} in {seeded:.0f} s, {series:,} series", file=sys.stderr)
    work = Path("/tmp") / f"{name}-work"
    try:
        if args.baseline:
            base_name = f"{name}_base"
            drop_database(base_name)
            as_baseline(name, base_name)
            code = checkout(args.baseline)
            try:
                base = start(code, pg_url(base_name), work / "baseline")
            finally:
                import shutil

                shutil.rmtree(code, ignore_errors=True)
                if not args.keep:
                    drop_database(base_name)
            rows.append([f"baseline {args.baseline}", report.ms(base["first"]),
                         report.ms(base["ready"]), f"{base['runs']:,.0f}"])  # fmt: skip
        now = start(None, pg_url(name), work / "current")
        rows.append(["current", report.ms(now["first"]), report.ms(now["ready"]),
                     f"{now['runs']:,.0f}"])  # fmt: skip
    finally:
        if not args.keep:
            drop_database(name)
    scale = f"{args.dags:,} DAGs, {tries:,} tries"
    verdicts.add(f"launch to first HTTP answer, {scale}", report.ms(now["first"]),
                 f"< {TARGET_FIRST * 1000:.0f} ms", now["first"] < TARGET_FIRST)  # fmt: skip
    verdicts.add(f"launch to restored (/healthz past 'starting'), {scale}", report.ms(now["ready"]),
                 f"< {TARGET_READY * 1000:.0f} ms", now["ready"] < TARGET_READY)  # fmt: skip
    runs = args.dags * args.runs
    verdicts.add("finished runs in /metrics after the restart", f"{now['runs']:,.0f}",
                 f"= {runs:,} (seeded)", now["runs"] == runs)  # fmt: skip
    print(note)
    print(report.table(
        "Collector start on a seeded PostgreSQL state DB (Airflow DB unreachable)",
        ["collector", "first HTTP answer", "restored", "runs in /metrics"], rows,
    ))  # fmt: skip
    print(verdicts.render("Restart benchmark: results"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
