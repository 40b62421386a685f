"""Poller benchmark: first backfill, steady-state cycle, and the scrape-time SQL it replaces.

For each size (1M and 5M task instances by default, 100 DAGs x 25 tasks, hourly), in one run:

1. seed a real Airflow 3.3 schema (`seed_metadata.build`);
2. first start: `CollectorService.poll_once()` until `caught_up`, SQLite state DB in a temporary
   folder, `backfill_days` 7 (and 30 unless `--skip-30d`);
3. steady state: before each cycle, write what Airflow's scheduler would (a new running run
   with its 25 task instances, three task instances moving on, the oldest running run
   finishing, an asset event, an XCom, the scheduler heartbeat), then time `poll_once()` and,
   inside it, `Poller.poll()` (the Airflow-DB part); every SQL statement is timed at the client
   and the last cycle's statements are re-run under `EXPLAIN (ANALYZE, BUFFERS)`;
4. the scrape-time aggregation existing exporters run on every scrape, on the same database,
   warm: wall time at the client over loopback, with PostgreSQL's default parallel query and
   serial (`max_parallel_workers_per_gather = 0`, ~ database CPU time).

    .venv/bin/python bench/bench_poller.py            # 1M and 5M, ~15 minutes
    .venv/bin/python bench/bench_poller.py --small    # smoke run, under a minute

Databases are dropped at the end unless `--keep`; `--reuse` skips seeding a kept one.
`--what-if` adds cycles whose store gets only the task tries that changed since the previous
cycle (a bench-side filter standing in for a suggested poller change).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import re
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import report
import seed_metadata as seeding
from seed_metadata import Activity
from sqlalchemy import Engine, event

from impactwatch.catalog.model import Catalog
from impactwatch.collector.service import CollectorService
from impactwatch.collector.settings import CollectorSettings

TARGET_CYCLE = 0.050
TARGET_RATIO = 100.0
SAME_TOLERANCE = 1.25  # "the same at both sizes": the larger within 25% of the smaller

EXPORTER_QUERIES = {
    "dag_run count by dag_id, state": (
        "SELECT dag_id, state, count(*) FROM dag_run GROUP BY dag_id, state"
    ),
    "task_instance count by dag_id, state": (
        "SELECT dag_id, state, count(*) FROM task_instance GROUP BY dag_id, state"
    ),
    "latest run per DAG": (
        "SELECT DISTINCT ON (dag_id) dag_id, state, start_date, end_date FROM dag_run"
        " ORDER BY dag_id, run_after DESC"
    ),
}


def note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --- what Airflow writes between two cycles -------------------------------------------------
# --- what the collector sends to the database -----------------------------------------------
@dataclass
class Statement:
    sql: str
    params: Any
    seconds: float
    rows: int


class StatementLog:
    """Every statement an engine runs, timed at the client (execute + fetch, psycopg 3)."""

    def __init__(self, engine: Engine) -> None:
        self.current: list[Statement] = []
        self.enabled = True
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        conn.info["iw_bench_t0"] = time.perf_counter()

    def _after(self, conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        started = conn.info.pop("iw_bench_t0", None)
        if self.enabled and started is not None:
            seconds = time.perf_counter() - started
            self.current.append(Statement(statement, parameters, seconds, cursor.rowcount))

    def take(self) -> list[Statement]:
        out, self.current = self.current, []
        return out


def shape(statement: str) -> str:
    """A short, parameter-free name for a statement."""
    text = " ".join(statement.split())
    text = re.sub(r"%\(\w+\)s", "?", text)
    text = re.sub(r"\(\(\?, \?\)(?:, \(\?, \?\))*\)", "((?, ?), ...)", text)
    text = re.sub(r"\(\?(?:, \?)+\)", "(?, ...)", text)
    text = re.sub(r"^SELECT .*? FROM ", "SELECT ... FROM ", text)
    text = re.sub(
        r"\b(?:dag_run|task_instance_history|task_instance|asset_event|xcom|job)\.", "", text
    )
    return text[:118]


@dataclass
class Explained:
    shape: str
    calls: int = 0
    rows: int = 0
    examined: int = 0
    hit: int = 0
    read: int = 0
    execution_ms: float = 0.0
    planning_ms: float = 0.0
    client_ms: float = 0.0
    nodes: set[str] = field(default_factory=set)


def _walk(node: dict[str, Any], found: Explained) -> None:
    kind = node.get("Node Type", "")
    if "Scan" in kind:
        loops = node.get("Actual Loops", 1)
        removed = node.get("Rows Removed by Filter", 0) + node.get(
            "Rows Removed by Index Recheck", 0
        )
        found.examined += int((node.get("Actual Rows", 0) + removed) * loops)
        index = node.get("Index Name")
        found.nodes.add(f"{kind} {index}" if index else f"{kind} {node.get('Relation Name', '')}")
    for child in node.get("Plans", ()):
        _walk(child, found)


# TIMING OFF: no per-node clock reads, so Execution Time is close to the real cost.
_EXPLAIN = "EXPLAIN (ANALYZE, BUFFERS, TIMING OFF, FORMAT JSON) "


def explain(engine: Engine, statements: list[Statement]) -> list[Explained]:
    """Re-run each statement under EXPLAIN (ANALYZE, BUFFERS); totals per shape."""
    by_shape: dict[str, Explained] = {}
    with engine.connect() as conn:
        cursor = conn.connection.dbapi_connection.cursor()
        for st in statements:
            cursor.execute(_EXPLAIN + st.sql, st.params or None)
            plan = cursor.fetchone()[0][0]
            found = by_shape.setdefault(shape(st.sql), Explained(shape(st.sql)))
            found.calls += 1
            found.rows += int(plan["Plan"].get("Actual Rows", 0))
            found.hit += plan["Plan"].get("Shared Hit Blocks", 0)
            found.read += plan["Plan"].get("Shared Read Blocks", 0)
            planning = plan.get("Planning", {})
            found.hit += planning.get("Shared Hit Blocks", 0)
            found.read += planning.get("Shared Read Blocks", 0)
            found.execution_ms += plan.get("Execution Time", 0.0)
            found.planning_ms += plan.get("Planning Time", 0.0)
            found.client_ms += st.seconds * 1000
            _walk(plan["Plan"], found)
        conn.rollback()
    return list(by_shape.values())


# --- the measurements -----------------------------------------------------------------------
@dataclass
class Backfill:
    days: float
    seconds: float
    cycles: int
    runs: int
    tries: int
    rows_read: int
    state_db_mb: float


def _service(url: str, state_path: Path, days: float) -> tuple[CollectorService, list[str]]:
    settings = CollectorSettings(
        airflow_db=url, state_db=f"sqlite:///{state_path}", backfill_days=days
    )
    service = CollectorService(settings, Catalog())
    errors: list[str] = []
    failed = service._failed

    def record(db: str, exc: BaseException) -> None:  # a failed cycle must stop the benchmark
        errors.append(f"{db}: {type(exc).__name__}: {exc}")
        failed(db, exc)

    service._failed = record  # type: ignore[method-assign]
    return service, errors


def _must(result: Any, errors: list[str]) -> Any:
    if result is None:
        raise RuntimeError(f"poll_once failed: {errors[-1] if errors else 'unknown'}")
    return result


def backfill(url: str, state_path: Path, days: float) -> tuple[Backfill, CollectorService]:
    service, errors = _service(url, state_path, days)
    cycles = runs = tries = rows = 0
    started = time.perf_counter()
    while True:
        result = _must(service.poll_once(), errors)
        cycles += 1
        runs += len(result.batch.dag_runs)
        tries += len(result.batch.task_tries)
        rows += sum(result.rows_read.values())
        if cycles % 10 == 0:
            note(
                f"    backfill {days:g}d: {cycles} cycles, {tries:,} tries, "
                f"{time.perf_counter() - started:.0f} s"
            )
        if result.caught_up:
            break
    seconds = time.perf_counter() - started
    size = sum(p.stat().st_size for p in state_path.parent.glob(state_path.name + "*"))
    return Backfill(days, seconds, cycles, runs, tries, rows, size / 2**20), service


@dataclass
class Steady:
    cycle: list[float] = field(default_factory=list)
    poll: list[float] = field(default_factory=list)
    ingest: list[float] = field(default_factory=list)
    tries: list[int] = field(default_factory=list)
    sql: list[float] = field(default_factory=list)
    statements: list[int] = field(default_factory=list)
    rows_read: list[int] = field(default_factory=list)
    written: list[int] = field(default_factory=list)
    with_declarations: list[float] = field(default_factory=list)
    declarations_rows: list[int] = field(default_factory=list)
    last_rows_by_table: dict[str, int] = field(default_factory=dict)
    explained: list[Explained] = field(default_factory=list)
    explained_declarations: list[Explained] = field(default_factory=list)
    what_if_cycle: list[float] = field(default_factory=list)
    what_if_ingest: list[float] = field(default_factory=list)
    what_if_tries: list[int] = field(default_factory=list)
    phantom_tries: int = 0
    stored_tries: int = 0


def steady_state(
    service: CollectorService,
    activity: Activity,
    cycles: int,
    warmup: int,
    refreshes: int,
    what_if: bool = False,
) -> Steady:
    out = Steady()
    poller = service._poller()
    inner: Callable[[], Any] = poller.poll
    poll_seconds: list[float] = []

    def timed() -> Any:
        t0 = time.perf_counter()
        try:
            return inner()
        finally:
            poll_seconds.append(time.perf_counter() - t0)

    poller.poll = timed  # type: ignore[method-assign]
    store = service.store
    inner_ingest: Callable[..., Any] = store.ingest
    ingest_seconds: list[float] = []

    def timed_ingest(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return inner_ingest(*args, **kwargs)
        finally:
            ingest_seconds.append(time.perf_counter() - t0)

    store.ingest = timed_ingest  # type: ignore[method-assign]
    statements = StatementLog(service.airflow)
    errors: list[str] = []
    last: list[Statement] = []
    for i in range(warmup + cycles):
        out_written = activity.step()
        statements.take()
        t0 = time.perf_counter()
        result = _must(service.poll_once(), errors)
        took = time.perf_counter() - t0
        last = statements.take()
        if i < warmup:
            continue
        out.cycle.append(took)
        out.poll.append(poll_seconds[-1])
        out.ingest.append(ingest_seconds[-1])
        out.tries.append(len(result.batch.task_tries))
        out.sql.append(sum(s.seconds for s in last))
        out.statements.append(len(last))
        out.rows_read.append(sum(result.rows_read.values()))
        out.written.append(out_written)
        out.last_rows_by_table = dict(result.rows_read)
    statements.enabled = False
    out.explained = explain(service.airflow, last)
    statements.enabled = True
    declarations: list[Statement] = []
    for _ in range(refreshes):  # every `declarations_interval` (60 s) a cycle also does this
        activity.step()
        service._declarations_at = 0.0
        statements.take()
        t0 = time.perf_counter()
        result = _must(service.poll_once(), errors)
        out.with_declarations.append(time.perf_counter() - t0)
        declarations = statements.take()
        out.declarations_rows.append(sum(s.rows for s in declarations if s.rows > 0))
    statements.enabled = False
    out.explained_declarations = explain(service.airflow, declarations)
    if what_if:
        _what_if_unchanged(service, activity, cycles, warmup, out, ingest_seconds)
    with service.store.engine.connect() as conn:
        out.phantom_tries, out.stored_tries = conn.exec_driver_sql(
            "SELECT count(*) FILTER (WHERE try_number = 0), count(*) FROM iw_task_try"
        ).one()
    poller.poll = inner  # type: ignore[method-assign]
    store.ingest = inner_ingest  # type: ignore[method-assign]
    return out


def _what_if_unchanged(
    service: CollectorService,
    activity: Activity,
    cycles: int,
    warmup: int,
    out: Steady,
    ingest_seconds: list[float],
) -> None:
    """What-if, not impactwatch's code: hand the store only task tries that changed since the
    previous cycle (what a poller-side fingerprint of runs in flight would do)."""
    poller = service._poller()
    timed = poller.poll
    seen: dict[str, tuple[Any, ...]] = {}

    def changed_only() -> Any:
        result = timed()
        fresh = []
        for t in result.batch.task_tries:
            mark = (t.state, t.start, t.end, t.queued, t.duration, t.pool, t.queue, t.operator)
            if seen.get(t.key) != mark:
                seen[t.key] = mark
                fresh.append(t)
        result.batch.task_tries = fresh
        return result

    poller.poll = changed_only  # type: ignore[method-assign]
    errors: list[str] = []
    for i in range(warmup + cycles):
        activity.step()
        t0 = time.perf_counter()
        result = _must(service.poll_once(), errors)
        took = time.perf_counter() - t0
        if i >= warmup:
            out.what_if_cycle.append(took)
            out.what_if_ingest.append(ingest_seconds[-1])
            out.what_if_tries.append(len(result.batch.task_tries))
    poller.poll = timed  # type: ignore[method-assign]


@dataclass
class ExporterQuery:
    label: str
    parallel: list[float]
    serial: list[float]
    rows: int
    hit: int
    read: int
    server_ms: float  # EXPLAIN planning + execution


def exporter(name: str, repeats: int, warm: int) -> list[ExporterQuery]:
    out: list[ExporterQuery] = []
    with psycopg.connect(seeding.dsn(name), autocommit=True) as conn:
        for label, query in EXPORTER_QUERIES.items():
            timings: dict[str, list[float]] = {"parallel": [], "serial": []}
            rows = 0
            for mode, workers in (("parallel", None), ("serial", 0)):
                if workers is None:
                    conn.execute("RESET max_parallel_workers_per_gather")
                else:
                    conn.execute("SET max_parallel_workers_per_gather = 0")
                for n in range(warm + repeats):
                    t0 = time.perf_counter()
                    rows = len(conn.execute(query).fetchall())
                    if n >= warm:
                        timings[mode].append(time.perf_counter() - t0)
            conn.execute("RESET max_parallel_workers_per_gather")
            plan = conn.execute(_EXPLAIN + query).fetchone()[0][0]
            out.append(
                ExporterQuery(
                    label,
                    timings["parallel"],
                    timings["serial"],
                    rows,
                    plan["Plan"].get("Shared Hit Blocks", 0),
                    plan["Plan"].get("Shared Read Blocks", 0),
                    plan.get("Planning Time", 0.0) + plan.get("Execution Time", 0.0),
                )
            )
    return out


@dataclass
class SizeResult:
    label: str
    seed: seeding.SeedReport | None
    seed_spec: seeding.SeedSpec
    backfills: list[Backfill]
    steady: Steady
    exporter: list[ExporterQuery]
    rss_mb: float


def size_label(tis: int) -> str:
    return f"{tis // 1_000_000}M" if tis >= 1_000_000 else f"{tis // 1000}k"


def run_size(tis: int, args: argparse.Namespace) -> SizeResult:
    label = size_label(tis)
    name = f"iw_bench_poller_{label.lower()}"
    spec = seeding.SeedSpec(dags=args.dags, runs_per_dag=math.ceil(tis / (args.dags * 25)))
    seeded: seeding.SeedReport | None = None
    if args.reuse and seeding.database_exists(name):
        note(f"reusing {name}")
    else:
        seeded = seeding.build(name, spec)
    url = seeding.reader_url(name)
    backfills: list[Backfill] = []
    try:
        with tempfile.TemporaryDirectory(prefix="iw-bench-poller-") as tmp:
            note(f"[{label}] first start, backfill 7 days")
            first, service = backfill(url, Path(tmp) / "state7.db", 7)
            backfills.append(first)
            note(f"[{label}] steady state, {args.cycles} cycles")
            activity = Activity(name, spec)
            try:
                steady = steady_state(
                    service, activity, args.cycles, args.warmup, args.refreshes, args.what_if
                )
            finally:
                activity.close()
                service.close()
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            note(f"[{label}] exporter queries")
            scrape = exporter(name, args.repeats, warm=3)
            for days in args.extra_days:
                note(f"[{label}] first start, backfill {days:g} days")
                more, other = backfill(url, Path(tmp) / f"state{days:g}.db", days)
                other.close()
                backfills.append(more)
    finally:
        if not args.keep:
            seeding.drop_database(name)
    return SizeResult(label, seeded, spec, backfills, steady, scrape, rss)


# --- the report -----------------------------------------------------------------------------
def render(results: list[SizeResult], args: argparse.Namespace) -> str:
    ms, med, p95 = report.ms, report.median, report.p95
    parts: list[str] = []
    seed_rows = []
    for r in results:
        spec = r.seed_spec
        seconds = f"{r.seed.total:.1f} s" if r.seed else "reused"
        size = sum(r.seed.sizes_mb.values()) if r.seed else float("nan")
        seed_rows.append((r.label, spec.describe(), f"{size:,.0f} MB", seconds))
    parts.append(
        report.table("Seeded Airflow DBs", ("size", "history", "on disk", "seed time"), seed_rows)
    )

    rows = []
    for r in results:
        for b in r.backfills:
            rate = b.tries / b.seconds if b.seconds else 0
            rows.append(
                (
                    r.label,
                    f"{b.days:g} days",
                    f"{b.runs:,}",
                    f"{b.tries:,}",
                    b.cycles,
                    f"{b.seconds:.1f} s",
                    f"{rate:,.0f}/s",
                    f"{b.state_db_mb:.0f} MB",
                )
            )
    parts.append(
        report.table(
            "First start: CollectorService.poll_once() until caught_up (SQLite state DB)",
            ("size", "window", "runs", "task tries", "cycles", "time", "tries/s", "state DB"),
            rows,
        )
    )

    rows = []
    for r in results:
        s = r.steady
        rows.append(
            (
                r.label,
                len(s.cycle),
                ms(med(s.cycle)),
                ms(p95(s.cycle)),
                ms(med(s.poll)),
                ms(p95(s.poll)),
                ms(med(s.sql)),
                ms(med(s.ingest)),
                f"{med(s.statements):.0f}",
                f"{med(s.rows_read):,.0f}",
                f"{med(s.tries):,.0f}",
                f"{med(s.written):.0f}",
                ms(med(s.with_declarations)) if s.with_declarations else "-",
            )
        )
        if s.what_if_cycle:
            rows.append(
                (
                    f"{r.label} what-if: changed tries only",
                    len(s.what_if_cycle),
                    ms(med(s.what_if_cycle)),
                    ms(p95(s.what_if_cycle)),
                    *("-",) * 3,
                    ms(med(s.what_if_ingest)),
                    "-",
                    "-",
                    f"{med(s.what_if_tries):,.0f}",
                    *("-",) * 2,
                )
            )
    parts.append(
        report.table(
            "Steady state (per cycle; SQL = sum of statement wall times at the client)",
            (
                "size",
                "cycles",
                "poll_once p50",
                "p95",
                "Poller.poll p50",
                "p95",
                "SQL p50",
                "Store.ingest p50",
                "statements",
                "rows read",
                "tries to store",
                "rows written",
                "with declarations p50",
            ),
            rows,
        )
    )

    for r in results:
        s = r.steady
        rows = [
            (
                e.shape,
                e.calls,
                f"{e.rows:,}",
                f"{e.examined:,}",
                f"{e.hit:,}",
                f"{e.read:,}",
                f"{e.planning_ms:.2f}",
                f"{e.execution_ms:.2f}",
                f"{e.client_ms:.2f}",
            )
            for e in s.explained
        ]
        total = (
            "TOTAL",
            sum(e.calls for e in s.explained),
            f"{sum(e.rows for e in s.explained):,}",
            f"{sum(e.examined for e in s.explained):,}",
            f"{sum(e.hit for e in s.explained):,}",
            f"{sum(e.read for e in s.explained):,}",
            f"{sum(e.planning_ms for e in s.explained):.2f}",
            f"{sum(e.execution_ms for e in s.explained):.2f}",
            f"{sum(e.client_ms for e in s.explained):.2f}",
        )
        parts.append(
            report.table(
                f"[{r.label}] last steady cycle, EXPLAIN (ANALYZE, BUFFERS) per statement shape"
                " (rows examined = scanned + filtered out; buffers = 8 kB pages incl. planning)",
                (
                    "statement",
                    "calls",
                    "rows out",
                    "rows examined",
                    "buf hit",
                    "buf read",
                    "plan ms",
                    "exec ms",
                    "client ms",
                ),
                [*rows, total],
            )
        )
        plans = sorted({n for e in s.explained for n in e.nodes})
        parts.append(f"[{r.label}] scan nodes used: " + "; ".join(plans))
        if s.explained_declarations:
            d = s.explained_declarations
            parts.append(
                f"[{r.label}] a cycle with the declarations refresh also reads "
                f"{sum(e.rows for e in d):,} rows in {len(d)} statement shapes, "
                f"{sum(e.hit + e.read for e in d):,} buffers"
            )
        parts.append(
            f"[{r.label}] rows_read of the last cycle: {s.last_rows_by_table}; "
            f"state DB holds {s.phantom_tries:,} of {s.stored_tries:,} task tries with "
            "try_number 0 (task instances not scheduled yet)"
        )

    rows = []
    for r in results:
        for q in r.exporter:
            rows.append(
                (
                    r.label,
                    q.label,
                    q.rows,
                    ms(med(q.parallel)),
                    ms(med(q.serial)),
                    f"{q.server_ms:.1f} ms",
                    f"{q.hit + q.read:,}",
                )
            )
        rows.append(
            (
                r.label,
                "TOTAL per scrape",
                "",
                ms(sum(med(q.parallel) for q in r.exporter)),
                ms(sum(med(q.serial) for q in r.exporter)),
                f"{sum(q.server_ms for q in r.exporter):.1f} ms",
                f"{sum(q.hit + q.read for q in r.exporter):,}",
            )
        )
    parts.append(
        report.table(
            f"Scrape-time SQL of existing exporters (warm, median of {args.repeats}, "
            "wall time at the client over loopback; server = EXPLAIN ANALYZE planning + "
            "execution, parallel)",
            (
                "size",
                "query",
                "rows",
                "default (parallel)",
                "serial (~CPU)",
                "server (EXPLAIN)",
                "buffers",
            ),
            rows,
        )
    )

    verdicts = report.Verdicts()
    for r in results:
        s = r.steady
        verdicts.add(
            f"steady poll_once p50 at {r.label}",
            ms(med(s.cycle)),
            "< 50 ms",
            med(s.cycle) < TARGET_CYCLE,
        )
        verdicts.add(
            f"steady poll_once p95 at {r.label}",
            ms(p95(s.cycle)),
            "< 50 ms",
            p95(s.cycle) < TARGET_CYCLE,
        )
        verdicts.add(
            f"steady Poller.poll (Airflow DB part) p50 at {r.label}",
            ms(med(s.poll)),
            "< 50 ms",
            med(s.poll) < TARGET_CYCLE,
        )
        if s.with_declarations:
            verdicts.add(
                f"cycle with declarations refresh (1 in 6) p50 at {r.label}",
                ms(med(s.with_declarations)),
                "< 50 ms",
                med(s.with_declarations) < TARGET_CYCLE,
            )
    if len(results) >= 2:
        a, b = results[0], results[-1]
        for what, get in (
            ("poll_once p50", lambda r: med(r.steady.cycle)),
            ("SQL time p50", lambda r: med(r.steady.sql)),
            ("buffers per cycle", lambda r: sum(e.hit + e.read for e in r.steady.explained)),
        ):
            va, vb = get(a), get(b)
            ratio = vb / va if va else float("inf")
            verdicts.add(
                f"{what}: {b.label} / {a.label}",
                f"{ratio:.2f}x ({va:.4g} -> {vb:.4g})"
                if "buffers" in what
                else f"{ratio:.2f}x ({ms(va)} -> {ms(vb)})",
                f"same (<= {SAME_TOLERANCE}x)",
                ratio <= SAME_TOLERANCE,
            )
    for r in results:
        scrape = sum(med(q.parallel) for q in r.exporter)
        scrape_cpu = sum(med(q.serial) for q in r.exporter)
        ours_sql = med(r.steady.sql)
        ours = med(r.steady.cycle)
        big = r is results[-1] and r.seed_spec.task_instances >= 5_000_000
        verdicts.add(
            f"exporter scrape SQL / our cycle SQL at {r.label} (wall, default)",
            f"{scrape / ours_sql:,.0f}x ({ms(scrape)} vs {ms(ours_sql)})",
            ">= 100x at 5M" if big else "-",
            scrape / ours_sql >= TARGET_RATIO if big else None,
        )
        verdicts.add(
            f"exporter scrape SQL serial (~CPU) / our cycle SQL at {r.label}",
            f"{scrape_cpu / ours_sql:,.0f}x ({ms(scrape_cpu)} vs {ms(ours_sql)})",
            ">= 100x at 5M" if big else "-",
            scrape_cpu / ours_sql >= TARGET_RATIO if big else None,
        )
        ours_server = sum(e.planning_ms + e.execution_ms for e in r.steady.explained)
        scrape_server = sum(q.server_ms for q in r.exporter)
        verdicts.add(
            f"exporter / our cycle, server-side (EXPLAIN plan + exec) at {r.label}",
            f"{scrape_server / ours_server:,.0f}x ({scrape_server:.1f} ms vs {ours_server:.2f} ms)",
            ">= 100x at 5M" if big else "-",
            scrape_server / ours_server >= TARGET_RATIO if big else None,
        )
        verdicts.add(
            f"exporter scrape SQL / our whole poll_once at {r.label}",
            f"{scrape / ours:,.0f}x ({ms(scrape)} vs {ms(ours)})",
            "-",
            None,
        )
    parts.append(verdicts.render("Poller benchmark: results"))
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000000,5000000", help="task instances per DB")
    parser.add_argument("--dags", type=int, default=100)
    parser.add_argument("--cycles", type=int, default=40, help="measured steady cycles")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--refreshes", type=int, default=5, help="cycles with declarations")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per exporter query")
    parser.add_argument("--skip-30d", action="store_true", help="no 30-day backfill")
    parser.add_argument("--small", action="store_true", help="10 DAGs, 10k and 50k, ~1 minute")
    parser.add_argument("--keep", action="store_true", help="keep the seeded databases")
    parser.add_argument("--reuse", action="store_true", help="reuse kept databases")
    parser.add_argument(
        "--what-if",
        action="store_true",
        help="also time cycles whose store gets only changed task tries (a suggested fix)",
    )
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    args.extra_days = [] if args.skip_30d else [30.0]
    if args.small:
        sizes, args.dags, args.cycles, args.refreshes, args.repeats = [10_000, 50_000], 10, 12, 2, 3
        args.extra_days = []
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    started = time.perf_counter()
    load_before = os.getloadavg()
    results = [run_size(tis, args) for tis in sizes]
    print(render(results, args))
    print(
        f"\nload average (1, 5, 15 min) at start {load_before}, at end {os.getloadavg()} "
        f"on {os.cpu_count()} CPUs: wall times are noisy when other work shares the machine; "
        "buffers and rows are not"
    )
    print(
        f"\n(benchmark took {time.perf_counter() - started:.0f} s; "
        f"peak RSS of this process {max(r.rss_mb for r in results):.0f} MB)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
