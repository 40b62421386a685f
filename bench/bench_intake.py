"""Collector intake throughput: events/s stored through the real `POST /v1/events`, measured from
outside.

The collector runs as `impactwatch collector` in its own process (an empty SQLite file as
Airflow's DB: the poller finds no tables and backs off, so only the intake writes), one fresh
state DB per row. Load comes from other processes, each posting with the plugin's own transport
(`impactwatch.airflow_listeners.transport.post`), a new connection per request as the plugin
does, bodies encoded beforehand. With `--baseline <commit>` the same rows run against that
commit's `impactwatch` package (`git archive` into a temporary folder, the child's PYTHONPATH
pointing there) in the same run, printed beside today's tree and the target.

Rows, each on SQLite and PostgreSQL:
- task ends, paced: 2 events per request (a try's success and the next try's running) offered
  at 2,200 events/s (110% of the 2,000 events/s target) over 16 clients; each client keeps its
  own schedule and sends at once when it falls behind, so the figure says whether the collector
  kept up. Target >= 2,000 events/s, p99 < 50 ms.
- scheduler: 100 dag-run events per request, 2 clients in a closed loop (each sends its next
  request when the last is answered). Target >= 15,000 events/s.

events/s counts events in requests answered 202 (the collector answers once they are committed)
in the measured window after the warm-up; rows are counted in the state DB afterwards, and the
collector's CPU (all threads, /proc/<pid>/stat) per 1,000 events in the window.

    .venv/bin/python bench/bench_intake.py                       # today's tree, 5 s per row
    .venv/bin/python bench/bench_intake.py --baseline 4478007    # and that commit beside it
    .venv/bin/python bench/bench_intake.py --seconds 3 --sqlite-only   # smoke run
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import report
import seed_metadata as pg
from bench_router_common import checkout, percentile
from collector_process import TOKEN, CollectorProcess, cpu_seconds
from sqlalchemy import create_engine, text

from impactwatch.airflow_listeners import wire
from impactwatch.airflow_listeners.transport import post

START = 1795500000.0
PACED_TARGET = 2000.0
PACED_P99 = 0.050
BATCH_TARGET = 15000.0


@dataclass(frozen=True)
class Shape:
    name: str
    per_request: int
    clients: int
    offered: float | None = None  # events/s offered in all (paced clients), else closed loop
    target: float = 0.0
    p99: float | None = None


SHAPES = (
    Shape(
        "task ends, paced", 2, 16, offered=1.1 * PACED_TARGET, target=PACED_TARGET, p99=PACED_P99
    ),
    Shape("scheduler", 100, 2, target=BATCH_TARGET),
)


# --- what the clients send ------------------------------------------------------------------
def task_try(run_id: str, task: int, state: str) -> dict:
    event = {
        "type": "task_try",
        "dag_id": "nightly_heavy_etl",
        "run_id": run_id,
        "task_id": f"transform_ledger_{task % 25}",
        "map_index": -1,
        "try_number": 1,
        "state": state,
        "start_date": START + task,
        "pool": "heavy_etl",
        "queue": "default",
        "operator": "_PythonDecoratedOperator",
        "hostname": "worker-1",
    }
    if state != "running":
        event.update(
            end_date=START + task + 12.5,
            duration=12.5,
            cpu_seconds=3.25,
            peak_rss_bytes=104857600,
        )
    return event


def dag_run(run_id: str, state: str) -> dict:
    event = {
        "type": "dag_run",
        "dag_id": "market_data_ingest",
        "run_id": run_id,
        "state": state,
        "run_type": "scheduled",
        "logical_date": START,
        "run_after": START + 3600,
        "queued_at": START + 3601,
        "start_date": START + 3602,
        "clear_number": 0,
        "triggered_by": "timetable",
    }
    if state != "running":
        event.update(end_date=START + 3662, duration=60.0)
    return event


def batches(shape: Shape, client: int) -> Iterator[list[dict]]:
    """Endless request bodies of one client; keys never repeat across clients."""
    prefix = f"c{client}-{uuid.uuid4().hex[:6]}"
    n = 0
    while True:
        if shape.name.startswith("task ends"):
            run_id = f"{prefix}-r{n // 25}"
            yield [
                task_try(run_id, n, "success"),
                task_try(f"{prefix}-r{(n + 1) // 25}", n + 1, "running"),
            ]
            n += 1
        else:  # scheduler: half the runs start, the half started before end
            half = shape.per_request // 2
            yield [dag_run(f"{prefix}-r{n + i}", "running") for i in range(half)] + [
                dag_run(f"{prefix}-r{n + i - half}", "success") for i in range(half)
            ]
            n += half


# --- a load generator process ---------------------------------------------------------------
MAX_BODY_BYTES = 64 * 2**20  # per client, pre-encoded so the clients spend little CPU


def client(url: str, shape: Shape, index: int, clock: Any, out: mp.Queue, seconds: float) -> None:
    """Pre-encode the bodies, say ready, wait for the start times, post until told to stop:
    one request at a time, at once (closed loop) or on this client's share of the offered
    rate (paced: a late client sends at once, it never skips)."""
    source = batches(shape, index)
    first = wire.encode(next(source))
    count = max(min(MAX_BODY_BYTES // len(first), 20_000), 10)
    if shape.offered:  # this client's share of the offered rate, with room to spare
        share = shape.offered / shape.clients / shape.per_request  # requests/s
        count = min(count, math.ceil(1.5 * seconds * share) + 10)
    bodies = [(first, shape.per_request)]
    bodies += [(wire.encode(b), len(b)) for b, _ in zip(source, range(count - 1), strict=False)]
    out.put("ready")
    while clock[1] == 0.0:
        time.sleep(0.01)
    start_at, until = clock[0], clock[1]
    interval = 0.0
    if shape.offered:
        interval = shape.clients * shape.per_request / shape.offered
    due = time.time() + interval * index / shape.clients  # clients spread over one interval
    accepted = events = errors = 0
    latencies: list[float] = []
    exhausted = True
    for body, n in bodies:
        now = time.time()
        if now >= until:
            exhausted = False
            break
        if interval:
            if now < due:
                time.sleep(due - now)
                now = time.time()
            due += interval
        began = time.perf_counter()
        try:
            response = post(url, body, TOKEN, 30.0)
        except OSError:
            errors += 1
            continue
        took = time.perf_counter() - began
        if now >= start_at:  # past the warm-up
            if response.status == 202:
                accepted += 1
                events += n
                latencies.append(took)
            else:
                errors += 1
    out.put(
        {
            "requests": accepted,
            "events": events,
            "errors": errors,
            "latencies": latencies,
            "exhausted": exhausted,
        }
    )


# --- one row --------------------------------------------------------------------------------
def load(url: str, shape: Shape, seconds: float, warmup: float, pid: int) -> dict[str, Any]:
    """Run the clients against `url`; the collector's CPU is read when the window opens and
    closes."""
    ctx = mp.get_context("fork")
    out: mp.Queue = ctx.Queue()
    clock = ctx.Array("d", [0.0, 0.0], lock=False)  # start of measurement, end
    procs = [
        ctx.Process(target=client, args=(url, shape, i, clock, out, seconds + warmup))
        for i in range(shape.clients)
    ]
    for p in procs:
        p.start()
    for _ in procs:
        assert out.get(timeout=300) == "ready"
    clock[0] = time.time() + warmup
    clock[1] = clock[0] + seconds
    time.sleep(max(clock[0] - time.time(), 0.0))
    cpu0 = cpu_seconds(pid)
    time.sleep(max(clock[1] - time.time(), 0.0))
    cpu = cpu_seconds(pid) - cpu0
    results = [out.get(timeout=seconds + warmup + 120) for _ in procs]
    for p in procs:
        p.join(10)
    if any(r["exhausted"] for r in results):
        print("  a client ran out of pre-encoded bodies", file=sys.stderr)
    latencies = [x for r in results for x in r["latencies"]]
    events = sum(r["events"] for r in results)
    return {
        "rate": events / seconds,
        "requests": sum(r["requests"] for r in results),
        "errors": sum(r["errors"] for r in results),
        "p50": percentile(latencies, 50),
        "p99": percentile(latencies, 99),
        "cpu_per_1k": cpu / events * 1000 if events else float("nan"),
    }


def stored_rows(state_db: str) -> int | None:
    """Task tries and runs in the state DB (None if its tables are named otherwise)."""
    engine = create_engine(state_db)
    try:
        with engine.connect() as conn:
            return sum(
                conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()
                for t in ("iw_task_try", "iw_dag_run")
            )
    except Exception:  # another schema: the row count is informative only
        return None
    finally:
        engine.dispose()


def run_row(
    label: str, shape: Shape, variant: str, code: Path | None, args: argparse.Namespace, work: Path
) -> dict[str, Any]:
    airflow_db = f"sqlite:///{work / 'no-airflow.db'}"
    if label == "SQLite":
        state_db = f"sqlite:///{work / f'state-{uuid.uuid4().hex[:8]}.db'}"
        name = None
    else:
        name = f"iw_bench_intake_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        pg.create_database(name)
        state_db = f"{pg.PG_BASE.replace('postgresql://', 'postgresql+psycopg://')}/{name}"
    print(f"{label}: {shape.name}: {variant}", file=sys.stderr, flush=True)
    try:
        collector = CollectorProcess(airflow_db, state_db, code=code)
        try:
            measured = load(
                f"{collector.url}/v1/events", shape, args.seconds, args.warmup, collector.pid
            )
        finally:
            collector.stop()
        measured["rows"] = stored_rows(state_db)
    finally:
        if name is not None:
            pg.drop_database(name)
    return {"db": label, "shape": shape, "variant": variant, **measured}


def render(results: list[dict[str, Any]], variants: list[str], args: argparse.Namespace) -> str:
    rows_ = []
    for r in results:
        shape: Shape = r["shape"]
        rows_.append(
            (
                r["db"],
                shape.name,
                shape.per_request,
                shape.clients,
                f"{shape.offered:,.0f}/s" if shape.offered else "closed loop",
                r["variant"],
                f"{r['rate']:,.0f}",
                report.ms(r["p50"]),
                report.ms(r["p99"]),
                r["errors"],
                "-" if r["rows"] is None else f"{r['rows']:,}",
                f"{r['cpu_per_1k'] * 1000:,.0f} ms",
            )
        )
    title = (
        f"Intake, POST /v1/events to `impactwatch collector` on loopback ({os.cpu_count()} cores"
        f" shared with the clients, {args.seconds:g} s per row after {args.warmup:g} s warm-up)"
    )
    header = (
        "state DB", "shape", "events/req", "clients", "offered", "code", "events/s stored",
        "p50", "p99", "errors", "rows in state DB", "collector CPU per 1k events",
    )  # fmt: skip
    out = [report.table(title, header, rows_), ""]
    by = {(r["db"], r["shape"].name, r["variant"]): r for r in results}
    side = []
    for db in dict.fromkeys(r["db"] for r in results):
        for shape in SHAPES:
            cells: list[object] = [db, shape.name]
            for variant in variants:
                hit = by.get((db, shape.name, variant))
                cells.append(
                    "-" if hit is None else f"{hit['rate']:,.0f}/s, p99 {report.ms(hit['p99'])}"
                )
            target = f">= {shape.target:,.0f}/s"
            if shape.p99 is not None:
                target += f", p99 < {report.ms(shape.p99)}"
            cells.append(target)
            side.append(cells)
    out.append(
        report.table(
            "events/s stored and p99 side by side (same run, same machine)",
            ("state DB", "shape", *variants, "target"),
            side,
        )
    )
    verdicts = report.Verdicts()
    for r in results:
        if r["variant"] != "current":
            continue
        shape = r["shape"]
        verdicts.add(
            f"events/s, {r['db']}, {shape.name} ({shape.per_request}/req)",
            f"{r['rate']:,.0f}",
            f">= {shape.target:,.0f}",
            r["rate"] >= shape.target,
        )
        if shape.p99 is not None:
            verdicts.add(
                f"p99, {r['db']}, {shape.name}",
                report.ms(r["p99"]),
                f"< {report.ms(shape.p99)}",
                r["p99"] < shape.p99,
            )
    out += ["", verdicts.render()]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured per row")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--baseline", metavar="COMMIT", help="also run that commit's code")
    parser.add_argument("--sqlite-only", action="store_true")
    parser.add_argument("--postgres-only", action="store_true")
    args = parser.parse_args(argv)
    choices = (("SQLite", args.postgres_only), ("PostgreSQL", args.sqlite_only))
    dbs = [db for db, skip in choices if not skip]
    codes: list[tuple[str, Path | None]] = []
    baseline = checkout(args.baseline) if args.baseline else None
    if baseline is not None:
        codes.append((f"baseline {args.baseline}", baseline))
    codes.append(("current", None))
    results: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="iw-bench-intake-") as tmp:
            work = Path(tmp)
            (work / "no-airflow.db").touch()
            for db in dbs:
                for shape in SHAPES:
                    for variant, code in codes:
                        results.append(run_row(db, shape, variant, code, args, work))
    finally:
        if baseline is not None:
            shutil.rmtree(baseline, ignore_errors=True)
    print(render(results, [v for v, _ in codes], args))
    print(f"\nload average (1, 5, 15 min) at the end {os.getloadavg()} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
