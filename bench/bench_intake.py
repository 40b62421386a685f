"""Collector intake throughput: events/s into the state DB through the real `POST /v1/events`.

A real `CollectorService` behind the collector's server runs in this process. Load comes from
other processes, each posting with the plugin's own transport
(`impactwatch.airflow_listeners.transport.post`), a new connection per request as the plugin
does. Each client sends one request at a time (a closed loop), or paces its requests to an
offered rate. For each state DB (SQLite file, PostgreSQL), each load shape and each variant of
the server, `--seconds` of sustained load are measured after a warm-up.

Load shapes:
- task ends: 2 events per request (a try's success and the next try's running), 8 clients.
  This is what task processes send when tasks outlive the listener's linger. Again with 24
  clients: each client waits for its answer before sending again, so 8 clients cap the
  requests in flight at 8, and throughput follows concurrency.
- task ends, paced: 2 events per request offered at the target rate, 5,000 events/s, spread
  over 24 clients. Each client keeps its own schedule and sends at once when it falls
  behind. This is closer to task processes ending independently of each other: did the
  collector keep up?
- scheduler: 100 dag-run events per request (running, then success), 2 clients.
- backlog: 500 task-try events per request (the listener's batch limit), 2 clients.

Variants, measured in the same run on the same machine:
- before: the intake as it was before this work (`intake_baseline.py`: one transaction per
  request through SQLAlchemy Core, PostgreSQL connections pinged on checkout), behind the
  standard library's `wsgiref` with a new thread per connection;
- threaded server: today's store (statements compiled once, run on a DBAPI cursor; group commit
  on the writer thread), behind the threaded server the router uses (`impactwatch.http_server`,
  a thread per request in flight);
- new: today's collector as shipped (`intake_server.py`: one event loop; SQLite groups written
  in the loop, PostgreSQL groups on the writer thread).

events/s counts events in requests answered 202 (a 202 is sent once its group has committed);
the rows are counted in the store afterwards. The tables then show:
- where the collector's time goes per request: parse (`parse_events`, pydantic), write (the
  group writes, per request) and metrics (`MetricsState.apply`);
- the mean number of requests per group commit;
- CPU per request: the collector process, the PostgreSQL backends, and the clients;
- how busy the machine was;
- the same steps alone in one thread without HTTP (the ceiling);
- a cProfile of the in-process path for the slowest shape.

    .venv/bin/python bench/bench_intake.py                # SQLite and PostgreSQL, 10 s each
    .venv/bin/python bench/bench_intake.py --seconds 3 --sqlite-only   # smoke run
    .venv/bin/python bench/bench_intake.py --variants new  # without the baselines
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import multiprocessing as mp
import os
import pstats
import resource
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import report
import seed_metadata as pg
from intake_baseline import BaselineStore, old_engine
from sqlalchemy import func, select, text

from impactwatch import http_server, wsgi
from impactwatch.airflow_listeners import wire
from impactwatch.airflow_listeners.transport import post
from impactwatch.catalog.model import Catalog
from impactwatch.collector import http_app
from impactwatch.collector.http_app import CollectorApp, serve
from impactwatch.collector.intake.parse import parse_events
from impactwatch.collector.service import CollectorService
from impactwatch.collector.settings import CollectorSettings
from impactwatch.collector.state.store import dag_run_t, task_try_t

TARGET = 5000.0
START = 1795500000.0

TOKEN = "bench-intake-token"  # the intake is closed without one


@dataclass(frozen=True)
class Shape:
    name: str
    per_request: int
    clients: int
    offered: float | None = None  # events/s offered in all (paced clients), else closed loop


SHAPES = (
    Shape("task ends", 2, 8),
    Shape("task ends x24", 2, 24),
    Shape("task ends, paced", 2, 24, offered=1.1 * TARGET),
    Shape("scheduler", 100, 2),
    Shape("backlog", 500, 2),
)
VARIANTS = ("before", "threaded server", "new")


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
        elif shape.name == "scheduler":
            half = shape.per_request // 2
            yield [dag_run(f"{prefix}-r{n + i}", "running") for i in range(half)] + [
                dag_run(f"{prefix}-r{n + i - half}", "success") for i in range(half)
            ]
            n += half
        else:
            yield [
                task_try(f"{prefix}-r{n // 25}", n + i, "success") for i in range(shape.per_request)
            ]
            n += shape.per_request


# --- a load generator process ---------------------------------------------------------------
MAX_BODY_BYTES = 150 * 2**20  # per client, pre-encoded so the clients spend little CPU


def client(url: str, shape: Shape, index: int, clock: Any, out: mp.Queue) -> None:
    """Pre-encode the bodies, say ready, wait for the start times, post until told to stop:
    one request at a time, at once (closed loop) or on this client's share of the offered
    rate (paced: a late client sends at once, it never skips)."""
    source = batches(shape, index)
    first = wire.encode(next(source))
    count = max(min(MAX_BODY_BYTES // len(first), 20_000), 10)
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
    cpu_from: float | None = None
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
        if cpu_from is None and now >= start_at:
            cpu_from = _own_cpu()
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
            "cpu": _own_cpu() - cpu_from if cpu_from is not None else 0.0,
        }
    )


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --- server-side timing ---------------------------------------------------------------------
@dataclass
class Split:
    """Seconds spent by the server, by part, and intake requests seen (`probe` reads them at
    the window's start and end)."""

    parts: dict[str, float] = field(default_factory=dict)
    requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, part: str, seconds: float) -> None:
        with self.lock:
            self.parts[part] = self.parts.get(part, 0.0) + seconds


_PARSE = http_app.parse_events  # the original, wrapped afresh for each collector


def instrument(app: CollectorApp, service: CollectorService, split: Split) -> None:
    """Wrap the intake's steps with timers (in this process, where the server runs): parse,
    the group writes (whichever thread runs them), metrics; count intake requests."""

    def timed(part: str, fn: Callable) -> Callable:
        def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
            began = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                split.add(part, time.perf_counter() - began)

        return wrapper

    http_app.parse_events = timed("parse", _PARSE)  # type: ignore[assignment]
    store = service.store
    if isinstance(store, BaselineStore):  # one transaction per request, in the handler
        store.ingest = timed("write", store.ingest)  # type: ignore[method-assign]
    else:  # group writes: in the loop (SQLite), on the writer thread, or by a blocked caller
        write = timed("write", store._write_group)
        store._write_group = write  # type: ignore[method-assign]
        store.writer._write = write
    service.state.apply = timed("metrics", service.state.apply)  # type: ignore[method-assign]
    refusal = app.refusal

    def counted(environ):  # type: ignore[no-untyped-def]
        with split.lock:
            split.requests += 1
        return refusal(environ)

    app.refusal = counted  # type: ignore[method-assign]


def service_for(state_db: str, work: Path, variant: str) -> CollectorService:
    """A collector service whose store is the variant's."""
    settings = CollectorSettings(
        airflow_db=f"sqlite:///{work / 'no-airflow.db'}", state_db=state_db
    )
    service = CollectorService(settings, Catalog())
    if variant == "before":
        service.store.close()
        service.store = BaselineStore(old_engine(state_db))
    return service


@contextmanager
def collector(
    state_db: str, work: Path, variant: str
) -> Iterator[tuple[CollectorService, str, Split]]:
    service = service_for(state_db, work, variant)
    app = CollectorApp(service, TOKEN, service.settings.max_body_bytes)
    split = Split()
    instrument(app, service, split)
    if variant == "before":  # wsgiref, a new thread per connection, as the collector had
        server, _ = wsgi.serve(app, "127.0.0.1", 0, "impactwatch-http")
    elif variant == "threaded server":  # a thread per request in flight
        server, _ = http_server.serve(app, "127.0.0.1", 0, "impactwatch-http")
    else:
        server, _ = serve(app, "127.0.0.1", 0)
    try:
        yield service, f"http://127.0.0.1:{server.server_port}/v1/events", split
    finally:
        server.shutdown()
        server.server_close()
        service.close()


def cpu_seconds() -> float:
    """CPU time of this process (the collector) so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def backend_cpu(service: CollectorService) -> dict[int, float]:
    """CPU seconds of each PostgreSQL backend serving the state DB (from /proc: a local
    server), by pid; empty for SQLite or when they cannot be read."""
    engine = service.store.engine
    if engine.dialect.name != "postgresql":
        return {}
    with engine.connect() as conn:
        pids = conn.execute(
            text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        ).scalars()
        out = {}
        tick = os.sysconf("SC_CLK_TCK")
        for pid in pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                return {}
            out[pid] = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        return out


def rows(service: CollectorService) -> int:
    with service.store.engine.connect() as conn:
        tries = conn.execute(select(func.count()).select_from(task_try_t)).scalar_one()
        runs = conn.execute(select(func.count()).select_from(dag_run_t)).scalar_one()
    return tries + runs


def machine_cpu() -> tuple[float, float]:
    """CPU seconds of the whole machine so far: all, and idle (from /proc/stat)."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    return sum(ticks) / tick, (ticks[3] + ticks[4]) / tick  # idle + iowait


def probe(service: CollectorService, split: Split) -> dict[str, Any]:
    """Counters read at the start and the end of the measured window."""
    with split.lock:
        served = split.requests
        parts = dict(split.parts)
    return {
        "cpu": cpu_seconds(),
        "db": backend_cpu(service),
        "machine": machine_cpu(),
        "served": served,
        "parts": parts,
        "groups": (service.store.writer.groups, service.store.writer.jobs),
    }


def window(first: dict[str, Any], last: dict[str, Any]) -> dict[str, Any]:
    """What happened between two probes."""
    db = None
    if last["db"]:
        db = sum(v - first["db"].get(pid, 0.0) for pid, v in last["db"].items())
    (all0, idle0), (all1, idle1) = first["machine"], last["machine"]
    groups = last["groups"][0] - first["groups"][0]
    return {
        "cpu": last["cpu"] - first["cpu"],
        "db_cpu": db,
        "busy": 1 - (idle1 - idle0) / (all1 - all0) if all1 > all0 else float("nan"),
        "served": last["served"] - first["served"],
        "parts": {k: v - first["parts"].get(k, 0.0) for k, v in last["parts"].items()},
        "group": (last["groups"][1] - first["groups"][1]) / groups if groups else None,
    }


def load(
    url: str, shape: Shape, seconds: float, warmup: float, measure: Callable[[], dict]
) -> dict:
    """Run the clients; `measure()` is read when the measured window opens and closes."""
    ctx = mp.get_context("fork")
    out: mp.Queue = ctx.Queue()
    clock = ctx.Array("d", [0.0, 0.0], lock=False)  # start of measurement, end
    procs = [
        ctx.Process(target=client, args=(url, shape, i, clock, out)) for i in range(shape.clients)
    ]
    for p in procs:
        p.start()
    for _ in procs:
        assert out.get(timeout=300) == "ready"
    clock[0] = time.time() + warmup
    clock[1] = clock[0] + seconds
    time.sleep(max(clock[0] - time.time(), 0.0))
    first = measure()
    time.sleep(max(clock[1] - time.time(), 0.0))
    seen = window(first, measure())
    results = [out.get(timeout=seconds + warmup + 120) for _ in procs]
    for p in procs:
        p.join(10)
    latencies = sorted(x for r in results for x in r["latencies"])
    if any(r["exhausted"] for r in results):
        print("  a client ran out of pre-encoded bodies: raise MAX_BODY_BYTES", file=sys.stderr)
    requests = sum(r["requests"] for r in results)
    return {
        **seen,
        "events": sum(r["events"] for r in results),
        "requests": requests,
        "errors": sum(r["errors"] for r in results),
        "client_cpu": sum(r["cpu"] for r in results) / requests if requests else float("nan"),
        "p50": report.median(latencies),
        "p99": latencies[int(0.99 * (len(latencies) - 1))] if latencies else float("nan"),
    }


def ceiling(state_db: str, shape: Shape, work: Path, variant: str) -> dict[str, float]:
    """One thread, no HTTP: parse, write and metrics per request, and the events/s they
    allow."""
    service = service_for(state_db, work, variant)
    source = batches(shape, 98)
    bodies = [wire.encode(next(source)) for _ in range(max(20, 4000 // shape.per_request))]
    spent = {"parse": 0.0, "write": 0.0, "metrics": 0.0}
    for body in bodies:
        t0 = time.perf_counter()
        batch = parse_events(body)
        t1 = time.perf_counter()
        if isinstance(service.store, BaselineStore):
            changes = service.store.ingest(batch)
        else:  # the group write itself, as the event loop runs it (no thread hand-off)
            got = service.store.ingest_now([batch])[0]
            assert not isinstance(got, BaseException), got
            changes = got
        t2 = time.perf_counter()
        service.state.apply(changes, "listener", time.time())
        t3 = time.perf_counter()
        spent["parse"] += t1 - t0
        spent["write"] += t2 - t1
        spent["metrics"] += t3 - t2
    service.close()
    n = len(bodies)
    out = {k: v / n for k, v in spent.items()}
    out["rate"] = n * shape.per_request / sum(spent.values())
    return out


def profile(state_db: str, shape: Shape, work: Path, requests: int = 200) -> str:
    """cProfile of parse + ingest in-process (no HTTP), top functions by own time."""
    service = service_for(state_db, work, "new")
    bodies = []
    source = batches(shape, 99)
    for _ in range(requests):
        bodies.append(wire.encode(next(source)))
    profiler = cProfile.Profile()
    began = time.perf_counter()
    profiler.enable()
    for body in bodies:
        for changes in service.store.ingest_now([parse_events(body)]):
            assert not isinstance(changes, BaseException), changes
            service.state.apply(changes, "listener", time.time())
    profiler.disable()
    took = time.perf_counter() - began
    service.close()
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text).sort_stats("tottime")
    stats.print_stats(14)
    events = requests * shape.per_request
    head = (
        f"in-process, {requests} requests x {shape.per_request} events: "
        f"{events / took:,.0f} events/s (under the profiler)"
    )
    lines = [ln for ln in text.getvalue().splitlines() if ln.strip()]
    start = next(i for i, ln in enumerate(lines) if ln.lstrip().startswith("ncalls"))
    return "\n".join([head, *lines[start:]])


def fresh(state_db: str) -> None:
    """Empty the state DB for the next measurement."""
    if state_db.startswith("sqlite"):
        for suffix in ("", "-wal", "-shm"):
            Path(state_db.removeprefix("sqlite:///") + suffix).unlink(missing_ok=True)
    else:
        pg.create_database(state_db.rsplit("/", 1)[1])  # drops the old one first


def run_db(label: str, state_db: str, args: argparse.Namespace, work: Path) -> list[dict]:
    out = []
    for shape in SHAPES:
        for variant in args.variants:
            fresh(state_db)
            with collector(state_db, work, variant) as (service, url, split):
                before = rows(service)
                print(f"{label}: {shape.name}: {variant}", file=sys.stderr, flush=True)
                measured = load(
                    url, shape, args.seconds, args.warmup, lambda s=service: probe(s, split)
                )
                stored = rows(service) - before
            fresh(state_db)
            alone = ceiling(state_db, shape, work, variant)
            out.append(
                {
                    "db": label,
                    "shape": shape,
                    "variant": variant,
                    "rate": measured["events"] / args.seconds,
                    "stored": stored,
                    "alone": alone,
                    **measured,
                }
            )
    return out


def render(results: list[dict], args: argparse.Namespace, profiled: str) -> str:
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
                f"{r['requests'] / args.seconds:,.0f}",
                report.ms(r["p50"]),
                report.ms(r["p99"]),
                r["errors"],
                f"{r['stored']:,}",
                "-" if r["group"] is None else f"{r['group']:.1f}",
            )
        )
    title = (
        f"Intake throughput, POST /v1/events on loopback ({os.cpu_count()} cores shared with "
        f"the clients, {args.seconds:.0f} s sustained per row after {args.warmup:.0f} s warm-up)"
    )
    header = (
        "state DB",
        "shape",
        "events/req",
        "clients",
        "offered events/s",
        "variant",
        "events/s",
        "req/s",
        "p50",
        "p99",
        "errors",
        "rows stored",
        "requests/commit",
    )
    out = [report.table(title, header, rows_), ""]
    split_rows = []
    for r in results:
        parts, served = r["parts"], max(r["served"], 1)
        cells = [r["db"], r["shape"].name, r["variant"]]
        for part in ("parse", "write", "metrics"):
            cells.append(f"{parts.get(part, 0.0) / served * 1e6:,.0f} us")
        split_rows.append(cells)
    out.append(
        report.table(
            "Where the collector's time goes, per request, under that load (wall time; write is"
            " the group writes shared out per request, waits for the GIL included)",
            ("state DB", "shape", "variant", "parse", "write", "metrics"),
            split_rows,
        )
    )
    cpu_rows = []
    for r in results:
        served = max(r["served"], 1)
        db = r["db_cpu"]
        cpu_rows.append(
            (
                r["db"],
                r["shape"].name,
                r["variant"],
                f"{r['cpu'] / served * 1e6:,.0f} us",
                "-" if db is None else f"{db / served * 1e6:,.0f} us",
                f"{r['client_cpu'] * 1e6:,.0f} us",
                f"{r['busy'] * 100:.0f}%",
                f"{served * r['shape'].per_request / r['cpu']:,.0f}" if r["cpu"] else "-",
            )
        )
    out += [
        "",
        report.table(
            "CPU per request in the measured window: the collector process (all its threads),"
            " the PostgreSQL backends serving it, the client processes; how busy the 2 cores"
            " were; the events/s one core of collector allows at that CPU per request",
            (
                "state DB",
                "shape",
                "variant",
                "collector CPU/req",
                "DB CPU/req",
                "client CPU/req",
                "machine busy",
                "events/s per collector core",
            ),
            cpu_rows,
        ),
    ]
    alone_rows = []
    for r in results:
        a = r["alone"]
        alone_rows.append(
            (
                r["db"],
                r["shape"].name,
                r["variant"],
                f"{a['parse'] * 1000:.2f} ms",
                f"{a['write'] * 1000:.2f} ms",
                f"{a['metrics'] * 1000:.2f} ms",
                f"{a['rate']:,.0f}",
            )
        )
    out += [
        "",
        report.table(
            "The same steps alone: one thread, no HTTP, no other load (no group to commit)",
            ("state DB", "shape", "variant", "parse", "write", "metrics", "events/s"),
            alone_rows,
        ),
    ]
    side = []
    by = {(r["db"], r["shape"].name, r["variant"]): r for r in results}
    for db in dict.fromkeys(r["db"] for r in results):
        for shape in SHAPES:
            cells: list[object] = [db, shape.name, shape.per_request]
            for variant in VARIANTS:
                hit = by.get((db, shape.name, variant))
                cells.append("-" if hit is None else f"{hit['rate']:,.0f}")
            cells.append(f">= {TARGET:,.0f}")
            side.append(cells)
    out += [
        "",
        report.table(
            "events/s side by side (same run, same machine)",
            ("state DB", "shape", "events/req", *VARIANTS, "target"),
            side,
        ),
    ]
    verdicts = report.Verdicts()
    for r in results:
        if r["variant"] != "new":
            continue
        verdicts.add(
            f"events/s, {r['db']}, {r['shape'].name} ({r['shape'].per_request}/req)",
            f"{r['rate']:,.0f}",
            f">= {TARGET:,.0f}",
            r["rate"] >= TARGET,
        )
    out += ["", verdicts.render(), "", "Profile of the slowest shape (new)", profiled]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--sqlite-only", action="store_true")
    parser.add_argument("--postgres-only", action="store_true")
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=VARIANTS,
        default=list(VARIANTS),
        help="which servers to measure (default: all, side by side)",
    )
    args = parser.parse_args(argv)
    results: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="iw-bench-intake-") as tmp:
        work = Path(tmp)
        if not args.postgres_only:
            results += run_db("SQLite", f"sqlite:///{work / 'state.db'}", args, work)
        if not args.sqlite_only:
            name = f"iw_bench_intake_{os.getpid()}"
            pg.create_database(name)
            try:
                url = f"{pg.PG_BASE.replace('postgresql://', 'postgresql+psycopg://')}/{name}"
                results += run_db("PostgreSQL", url, args, work)
            finally:
                pg.drop_database(name)
        new = [r for r in results if r["variant"] == "new"] or results
        slowest = min(new, key=lambda r: r["rate"])
        if slowest["db"] == "SQLite":
            db = f"sqlite:///{work / 'profile.db'}"
            profiled = profile(db, slowest["shape"], work)
        else:
            name = f"iw_bench_intake_profile_{os.getpid()}"
            pg.create_database(name)
            try:
                url = f"{pg.PG_BASE.replace('postgresql://', 'postgresql+psycopg://')}/{name}"
                profiled = profile(url, slowest["shape"], work)
            finally:
                pg.drop_database(name)
    print(render(results, args, f"{slowest['db']}, {slowest['shape'].name}: {profiled}"))
    print(
        json.dumps(
            {f"{r['db']}/{r['shape'].name}/{r['variant']}": round(r["rate"]) for r in results}
        ),
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
