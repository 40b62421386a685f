"""/metrics benchmark: exposition time and size at 100 and 10,000 DAGs, and the collector's RSS.

Two ways to get the state a scrape reads:

- real collector (unless `--skip-service` or `--small`), measured from outside so that it runs
  against today's tree and, with `--baseline <commit>`, that commit's `impactwatch` package in
  the same run (`git archive`, see bench_router_common.checkout): a seeded 10,000-DAG Airflow DB
  (4 daily runs per DAG x 25 tasks) and a catalog of 20 teams with one pipeline and one data
  product per DAG; `impactwatch collector --once` backfills a fresh state DB (timed, peak RSS),
  then `impactwatch collector` is started on it (a restart): its first GET /metrics is sent as
  soon as /healthz answers, then warm scrapes (gzip, as Prometheus asks, and plain), each after
  `--churn` scheduler steps written to Airflow's DB (`seed_metadata.Activity`) and a poll cycle;
  RSS from /proc/<pid>/status. Target: no slower than the baseline (within `--noise`), and a
  warm scrape < 1 s.
- synthetic, in-process (each size in its own child process, so that its RSS is the state's):
  the same catalog, fed `Changes` the way the service feeds them (finished successful and failed
  runs with 25 task tries each, schedule delays, queue waits in two pools, cost, runs in flight,
  XCom sizes, freshness and duration breaches). Scrape time is
  `prometheus_client.generate_latest(registry)` (median of 10 after one warm-up) and a real HTTP
  GET /metrics through the collector's app, plain and gzip; at the largest size the time is also
  split by metric family. This part imports the collector's internals, so it runs on this tree
  only.

    .venv/bin/python bench/bench_scrape.py --service-only --baseline 4478007   # ~6 min
    .venv/bin/python bench/bench_scrape.py            # synthetic 100 + 10,000, then the real one
    .venv/bin/python bench/bench_scrape.py --small    # synthetic 100 + 1,000, no DB, seconds

`--what-if` also times a direct renderer of the histogram families (not impactwatch's code) and
gzip levels.
"""

from __future__ import annotations

import argparse
import gc
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import report
import seed_metadata as seeding
import yaml
from bench_router_common import checkout
from collector_process import CollectorProcess, code_env
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.utils import floatToGoString

from impactwatch.catalog.model import Catalog
from impactwatch.collector.events import AssetUpdate, DagRun, TaskTry
from impactwatch.collector.http_app import collector_app
from impactwatch.collector.metrics.exporter import ImpactwatchCollector, _histogram
from impactwatch.collector.metrics.exposition import CachedExposition
from impactwatch.collector.metrics.state import DagInfo, Histogram, MetricsState
from impactwatch.collector.state.store import Changes
from impactwatch.contract import metrics as c
from impactwatch.contract.metrics import MetricSpec
from impactwatch.serving import Server, ServerLimits

TEAMS = 20
TASKS = 25
TIERS = ("critical", "high", "standard")
TARGET_SCRAPE = {100: 0.100, 10_000: 1.0}
TARGET_RSS_MB = 300.0


def dag_id(d: int) -> str:
    return f"dag_{d:05d}"  # the seeded DB's naming


def team(d: int) -> str:
    return f"team_{d % TEAMS:02d}"


def make_catalog(dags: int) -> Catalog:
    """20 teams; per DAG a pipeline and one data product (by run, by task or by Asset)."""
    return Catalog.model_validate(catalog_dict(dags))


def catalog_dict(dags: int) -> dict[str, Any]:
    """The catalog `make_catalog` validates, as the YAML a collector process reads."""
    datasets: dict[str, Any] = {}
    pipelines: dict[str, Any] = {}
    for d in range(dags):
        pipeline: dict[str, Any] = {"team": team(d), "tier": TIERS[d % 3], "max_duration": "30m"}
        if d % 10 == 0:
            pipeline["deadline"] = "06:00 Europe/London" if d % 20 else "07:30 UTC"
        pipelines[dag_id(d)] = pipeline
        if d % 13 == 0:
            producer = f"s3://lake/{dag_id(d)}/output"
        elif d % 2:
            producer = f"{dag_id(d)}.task_{TASKS - 1:02d}"
        else:
            producer = dag_id(d)
        datasets[f"{dag_id(d)}_table"] = {
            "team": team(d),
            "tier": TIERS[d % 3],
            "produced_by": producer,
            "freshness": "2h",
        }
    return {
        "teams": {f"team_{t:02d}": {"slack_channel": f"#team-{t:02d}"} for t in range(TEAMS)},
        "datasets": datasets,
        "pipelines": pipelines,
        "cost": {"pools": {"heavy_etl": {"cpu": 4, "memory_gb": 16}}},
        "defaults": {"team": "team_00"},
    }


def _run(d: int, k: int, state: str, start: float, took: float) -> tuple[DagRun, list[TaskTry]]:
    run_id = f"scheduled__{k}"
    run = DagRun(
        dag_id=dag_id(d),
        run_id=run_id,
        state=state,
        run_type="scheduled",
        logical_date=start - 5,
        run_after=start - 5,
        queued_at=start - 3,
        start=start,
        end=start + took,
    )
    slot = took / TASKS
    tries = []
    for i in range(TASKS):
        t_start = start + i * slot
        ok = state == "success" or i < TASKS - 1
        tries.append(
            TaskTry(
                dag_id=dag_id(d),
                run_id=run_id,
                task_id=f"task_{i:02d}",
                map_index=-1,
                try_number=1,
                state="success" if ok else "failed",
                start=t_start,
                end=t_start + slot * 0.9,
                queued=t_start - (30.0 if i % 5 == 4 else 1.5),
                duration=slot * 0.9,
                pool="heavy_etl" if i % 5 == 4 else "default_pool",
                queue="default",
                operator="PythonOperator",
            )
        )
    return run, tries


class Churn:
    """Between two scrapes, 1% of the DAGs finish a run (more than an hourly schedule gives in
    a 15 s scrape interval), as the poll cycles in between would report."""

    def __init__(self, state: MetricsState, dags: int, now: float) -> None:
        self.state, self.dags, self.now = state, dags, now
        self.step = max(dags // 100, 1)
        self.next, self.k = 0, 10

    def __call__(self) -> None:
        runs = []
        for i in range(self.step):
            d = (self.next + i) % self.dags
            runs.append(_run(d, self.k, "success", self.now - 900, 600))
        self.next, self.k = self.next + self.step, self.k + 1
        changes = Changes(
            finished_runs=runs,
            terminal_runs=[r for r, _ in runs],
            started_runs=[r for r, _ in runs],
            queued_tries=[t for _, tries in runs for t in tries],
            succeeded_tries=[t for _, tries in runs for t in tries],
        )
        self.state.apply(changes, "poller", self.now)


def synthetic_state(catalog: Catalog, dags: int, now: float) -> MetricsState:
    """A MetricsState fed like the service feeds it: per DAG two successes and a failure."""
    state = MetricsState(catalog)
    state.set_dags({dag_id(d): DagInfo(paused=d % 97 == 13) for d in range(dags)})
    running: dict[tuple[str, str], float] = {}
    xcoms: list[tuple[str, float, int]] = []
    for d in range(dags):
        stale = d % 7 == 0  # last success 5 h ago against a 2 h freshness: a breach
        last_end = now - (5 * 3600 if stale else 300 + d % 600)
        slow = 45 * 60 if d % 11 == 0 else 15 * 60  # over the 30 min max_duration
        runs = [
            _run(d, 0, "success", last_end - 7200 - 900, 900),
            _run(d, 1, "failed", last_end - 3600 - 600, 600),
            _run(d, 2, "success", last_end - slow, slow),
        ]
        changes = Changes(
            finished_runs=runs,
            terminal_runs=[r for r, _ in runs],
            started_runs=[r for r, _ in runs],
            queued_tries=[t for _, tries in runs for t in tries],
            succeeded_tries=[t for _, tries in runs for t in tries if t.state == "success"],
        )
        if d % 13 == 0:
            changes.assets.append(
                AssetUpdate(uri=f"s3://lake/{dag_id(d)}/output", timestamp=last_end)
            )
        state.apply(changes, "poller", now)
        if d % 10 == 0:
            running[(dag_id(d), "scheduled__3")] = now - 600
        xcoms.append((dag_id(d), now - 600, 200 + (d % 17 == 0) * 19_000))
    state.set_running(running)
    state.set_platform(
        pools={
            "default_pool": {"total": 128, "running": 40, "queued": 12, "open": 76},
            "heavy_etl": {"total": 16, "running": 16, "queued": 9, "open": 0},
        },
        import_errors=2,
        heartbeat=now - 3,
        missed_deadlines={},
    )
    state.record_xcom(xcoms, now)
    state.evaluate(now)
    return state


# --- measuring ------------------------------------------------------------------------------
def rss_mb() -> tuple[float, float]:
    """(current RSS, peak RSS) of this process in MB, from /proc/self/status."""
    found = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(("VmRSS:", "VmHWM:")):
                found[line.split(":")[0]] = int(line.split()[1]) / 1024
    return found.get("VmRSS", float("nan")), found.get("VmHWM", float("nan"))


def time_scrapes(registry: CollectorRegistry, repeats: int = 10) -> dict[str, Any]:
    generate_latest(registry)  # warm
    timings, body = [], b""
    for _ in range(repeats):
        t0 = time.perf_counter()
        body = generate_latest(registry)
        timings.append(time.perf_counter() - t0)
    lines = body.decode().splitlines()
    return {
        "median": report.median(timings),
        "p95": report.p95(timings),
        "bytes": len(body),
        "gzip_bytes": len(gzip.compress(body)),
        "samples": sum(1 for line in lines if line and not line.startswith("#")),
        "families": sum(1 for line in lines if line.startswith("# TYPE")),
    }


class _Families:
    """A collector that yields the families it was given (to time one family at a time)."""

    def __init__(self, families: list[Any]) -> None:
        self.families = families

    def collect(self) -> Any:
        return iter(self.families)


def breakdown(collector: ImpactwatchCollector) -> dict[str, Any]:
    """Where a scrape's time goes: the collector's collect(), then formatting per family."""
    t0 = time.perf_counter()
    families = list(collector.collect())
    collect_s = time.perf_counter() - t0
    rows = []
    for family in families:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Families([family]))  # type: ignore[arg-type]
        t0 = time.perf_counter()
        generate_latest(registry)
        rows.append((family.name, len(family.samples), time.perf_counter() - t0))
    return {"collect_s": collect_s, "families": sorted(rows, key=lambda r: -r[1])}


def time_http(
    service: Any, repeats: int = 10, between: Callable[[], None] | None = None
) -> dict[str, float]:
    """GET /metrics through the collector's own app and server on a loopback port: the first
    scrape of a fresh app, then the median of `repeats` plain and gzip scrapes, each after
    `between()` (untimed) has changed the state the way a poll cycle would."""
    server = Server(collector_app(service, None, 1 << 20), "127.0.0.1", 0, ServerLimits(), name="c")
    server.start()
    url = f"http://127.0.0.1:{server.port}/metrics"
    out: dict[str, float] = {}
    try:
        for label, headers in (("plain", {}), ("gzip", {"Accept-Encoding": "gzip"})):
            timings = []
            for n in range(repeats + 1):
                if n and between is not None:
                    between()
                t0 = time.perf_counter()
                with urllib.request.urlopen(urllib.request.Request(url, headers=headers)) as resp:
                    resp.read()
                if n:
                    timings.append(time.perf_counter() - t0)
                elif label == "plain":
                    out["first"] = time.perf_counter() - t0
            out[label] = report.median(timings)
    finally:
        server.stop()
    return out


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def render_histogram(spec: MetricSpec, hist: Histogram, out: list[str]) -> None:
    """What-if, not impactwatch's code: one histogram family as Prometheus text, straight from
    the state's bucket rows (label strings built once per series, not per sample)."""
    name = spec.family
    doc = spec.help.replace("\\", r"\\").replace("\n", r"\n")
    out.append(f"# HELP {name} {doc}\n# TYPE {name} histogram\n")
    bounds = [floatToGoString(float(b)) for b in hist.buckets]
    names = list(spec.labels)
    order = sorted(range(len(names)), key=names.__getitem__)
    le_at = sum(1 for n in names if n < "le")
    for labels, row in hist.series.items():
        pairs = [f'{names[i]}="{_escape(labels[i])}"' for i in order]
        head, tail = ",".join(pairs[:le_at]), ",".join(pairs[le_at:])
        before = f'{name}_bucket{{{head}{"," if head else ""}le="'
        after = f'"{"," if tail else ""}{tail}}} '
        running = 0.0
        for bound, n in zip(bounds, row[:-2], strict=True):
            running += n
            out.append(f"{before}{bound}{after}{floatToGoString(running)}\n")
        out.append(f"{before}+Inf{after}{floatToGoString(row[-1])}\n")
        plain = ",".join(pairs)
        out.append(f"{name}_count{{{plain}}} {floatToGoString(row[-1])}\n")
        out.append(f"{name}_sum{{{plain}}} {floatToGoString(row[-2])}\n")


def what_if_direct(state: MetricsState) -> dict[str, Any]:
    """The four per-DAG histogram families: prometheus-client vs a direct renderer, same bytes;
    and gzip at level 9 (what `make_wsgi_app` uses) vs level 1."""
    pairs = [
        (c.DAG_RUN_DURATION, state.duration),
        (c.DAG_RUN_SCHEDULE_DELAY, state.delay),
        (c.TASK_QUEUED, state.queued),
        (c.DAG_RUN_COST, state.cost),
    ]
    t0 = time.perf_counter()
    families = [_histogram(spec, hist) for spec, hist in pairs]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))  # type: ignore[arg-type]
    reference = generate_latest(registry)
    reference_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    out: list[str] = []
    for spec, hist in pairs:
        render_histogram(spec, hist, out)
    direct = "".join(out).encode()
    direct_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    level9 = len(gzip.compress(reference))
    gzip9_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    level1 = len(gzip.compress(reference, 1))
    gzip1_s = time.perf_counter() - t0
    return {
        "identical": direct == reference,
        "bytes": len(reference),
        "reference_s": reference_s,
        "direct_s": direct_s,
        "gzip9_s": gzip9_s,
        "gzip9_bytes": level9,
        "gzip1_s": gzip1_s,
        "gzip1_bytes": level1,
    }


def child_synthetic(dags: int, what_if: bool = False) -> dict[str, Any]:
    now = time.time()
    base, _ = rss_mb()
    t0 = time.perf_counter()
    catalog = make_catalog(dags)
    catalog_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    state = synthetic_state(catalog, dags, now)
    build_s = time.perf_counter() - t0
    gc.collect()
    held, _ = rss_mb()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ImpactwatchCollector(state, clock=lambda: now))
    scrape = time_scrapes(registry)
    shim = SimpleNamespace(  # what the app reads
        registry=registry,
        state=state,
        clock=lambda: now,
        exposition=CachedExposition(state, lambda: now),
    )
    http = time_http(shim, 10 if dags <= 1000 else 3, Churn(state, dags, now))
    rss, peak = rss_mb()
    where = breakdown(ImpactwatchCollector(state, clock=lambda: now))
    t0 = time.perf_counter()
    for _ in range(5):
        state.evaluate(now)
    evaluate_s = (time.perf_counter() - t0) / 5
    return {
        "what_if": what_if_direct(state) if what_if else None,
        "mode": "synthetic",
        "dags": dags,
        "catalog_s": catalog_s,
        "build_s": build_s,
        "evaluate_s": evaluate_s,
        "base_rss": base,
        "held_rss": held,
        "rss": rss,
        "peak_rss": peak,
        "scrape": scrape,
        "http": http,
        "breakdown": where,
    }


def proc_memory(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MB; nan once it is gone."""
    found = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                found[line.split(":")[0]] = int(line.split()[1]) / 1024
    except OSError:
        pass
    return found.get("VmRSS", float("nan")), found.get("VmHWM", float("nan"))


def real_collector(
    code: Path | None, db: str, dags: int, catalog: Path, args: argparse.Namespace, work: Path
) -> dict[str, Any]:
    """`impactwatch collector` (the code at `code`, or this tree) on a seeded Airflow DB, from
    outside: first the backfill (`--once`, timed), then a served collector restarted on that
    state DB: its first GET /metrics as soon as /healthz answers, then warm scrapes, each after
    `--churn` scheduler steps were written to Airflow's DB and a poll cycle read them."""
    state_db = f"sqlite:///{work / f'state-{time.monotonic_ns()}.db'}"
    airflow_db = seeding.reader_url(db)
    argv = [
        sys.executable, "-m", "impactwatch.cli", "collector", "--once",
        "--airflow-db", airflow_db, "--state-db", state_db, "--catalog", str(catalog),
        "--backfill-days", str(args.backfill_days),
    ]  # fmt: skip
    t0 = time.perf_counter()
    log = work / "backfill.log"
    with log.open("w") as out:
        once = subprocess.Popen(argv, env=code_env(code), cwd=work, stdout=out, stderr=out)
    backfill_peak = 0.0
    while once.poll() is None:
        backfill_peak = max(backfill_peak, proc_memory(once.pid)[1])
        time.sleep(0.2)
    backfill_s = time.perf_counter() - t0
    if once.returncode != 0:
        raise RuntimeError(f"collector --once failed: {log.read_text()[-3000:]}")
    activity = seeding.Activity(db, seeding.SeedSpec(dags=dags, interval_hours=24))
    began = time.perf_counter()
    collector = CollectorProcess(
        airflow_db,
        state_db,
        code=code,
        catalog=catalog,
        extra=["--poll-interval", str(args.poll_interval)],
        ready_timeout=300,
    )
    try:
        listening_s = time.perf_counter() - began
        body, first = collector.get("/metrics")
        start_to_first = time.perf_counter() - began
        held_rss, _ = proc_memory(collector.pid)
        timings: dict[str, list[float]] = {"gzip": [], "plain": []}
        for _ in range(args.scrapes):
            for label, headers in (("gzip", {"Accept-Encoding": "gzip"}), ("plain", {})):
                for _ in range(args.churn):
                    activity.step()
                time.sleep(args.poll_interval * 1.5)  # a poll cycle reads what was written
                _, took = collector.get("/metrics", headers)
                timings[label].append(took)
        rss, peak = proc_memory(collector.pid)
    finally:
        collector.stop()
        activity.close()
    lines = body.decode().splitlines()
    return {
        "backfill_s": backfill_s,
        "backfill_peak": backfill_peak,
        "listening_s": listening_s,
        "first": first,
        "start_to_first": start_to_first,
        "gzip": report.median(timings["gzip"]),
        "plain": report.median(timings["plain"]),
        "bytes": len(body),
        "samples": sum(1 for line in lines if line and not line.startswith("#")),
        "held_rss": held_rss,
        "rss": rss,
        "peak_rss": peak,
    }


def in_child(*args: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", *args],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child {args} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- the report -----------------------------------------------------------------------------
def render(results: list[dict[str, Any]], verdicts: report.Verdicts) -> list[str]:
    """The synthetic states' tables; their verdicts go to `verdicts`."""
    ms = report.ms
    parts = []
    rows = []
    for r in results:
        s, h = r["scrape"], r["http"]
        what = "synthetic"
        rows.append(
            (
                f"{r['dags']:,}",
                what,
                ms(s["median"]),
                ms(s["p95"]),
                ms(h["first"]),
                ms(h["plain"]),
                ms(h["gzip"]),
                f"{s['bytes'] / 1024:,.0f} kB",
                f"{s['gzip_bytes'] / 1024:,.0f} kB",
                f"{s['samples']:,}",
                s["families"],
            )
        )
    parts.append(
        report.table(
            "Synthetic state, in-process: generate_latest over the registry (median/p95 of 10)"
            " and HTTP GET /metrics through the collector's app (first scrape, then median of 10,"
            " of 3 past 1,000 DAGs, each after 1% of DAGs finished a run)",
            (
                "DAGs",
                "state",
                "generate p50",
                "p95",
                "HTTP first",
                "HTTP plain",
                "HTTP gzip",
                "exposition",
                "gzipped",
                "samples",
                "families",
            ),
            rows,
        )
    )
    rows = []
    for r in results:
        made = f"catalog {r['catalog_s']:.2f} s + state {r['build_s']:.2f} s"
        extra = f"evaluate() {ms(r['evaluate_s'])}"
        rows.append(
            (
                f"{r['dags']:,}",
                r["mode"],
                made,
                f"{r['base_rss']:.0f} MB",
                f"{r['held_rss']:.0f} MB",
                f"{r['rss']:.0f} MB",
                f"{r['peak_rss']:.0f} MB",
                extra,
            )
        )
    parts.append(
        report.table(
            "Memory (child process; RSS after gc before scraping, RSS after the scrapes, "
            "peak = VmHWM)",
            (
                "DAGs",
                "state",
                "built by",
                "RSS at import",
                "RSS holding state",
                "after scrapes",
                "peak RSS",
                "cycle cost",
            ),
            rows,
        )
    )
    largest = max((r for r in results if "breakdown" in r), key=lambda r: r["dags"], default=None)
    if largest is not None:
        where = largest["breakdown"]
        n = largest["dags"]
        total = sum(t for _, _, t in where["families"])
        rows = [
            (name, f"{samples:,}", f"{samples / n:.1f}", ms(t), f"{100 * t / total:.0f}%")
            for name, samples, t in where["families"]
            if samples
        ]
        parts.append(
            report.table(
                f"Where the time goes at {n:,} DAGs (synthetic): ImpactwatchCollector.collect() "
                f"{ms(where['collect_s'])}; generate_latest per family (incl. its collect)",
                ("family", "samples", "per DAG", "time", "share"),
                rows,
            )
        )
    for r in results:
        w = r.get("what_if")
        if w:
            parts.append(
                report.table(
                    f"What-if at {r['dags']:,} DAGs (synthetic): the 4 per-DAG histogram "
                    "families, and gzip of that text",
                    ("way", "time", "bytes", "same text?"),
                    [
                        (
                            "HistogramMetricFamily + generate_latest (today)",
                            ms(w["reference_s"]),
                            f"{w['bytes']:,}",
                            "-",
                        ),
                        (
                            "direct render from MetricsState rows",
                            ms(w["direct_s"]),
                            f"{w['bytes']:,}",
                            "yes" if w["identical"] else "NO",
                        ),
                        (
                            "gzip level 9 (make_wsgi_app)",
                            ms(w["gzip9_s"]),
                            f"{w['gzip9_bytes']:,}",
                            "-",
                        ),
                        ("gzip level 1", ms(w["gzip1_s"]), f"{w['gzip1_bytes']:,}", "-"),
                    ],
                )
            )
    for r in results:
        target = TARGET_SCRAPE.get(r["dags"])
        label = "synthetic"
        s, h = r["scrape"], r["http"]
        limit = f"< {ms(target)}" if target else "-"
        for figure, seconds in (
            ("GET /metrics gzip, warm", h["gzip"]),
            ("GET /metrics plain, warm", h["plain"]),
            ("GET /metrics, first scrape of a fresh app", h["first"]),
        ):
            verdicts.add(
                f"{figure}, {r['dags']:,} DAGs, {label}",
                ms(seconds),
                limit,
                seconds < target if target else None,
            )
        verdicts.add(
            f"generate_latest over the whole registry, {r['dags']:,} DAGs, {label}",
            ms(s["median"]),
            "-",
            None,
        )
        if r["dags"] >= 10_000:
            verdicts.add(
                f"RSS holding the 10,000-DAG state, {label}",
                f"{r['held_rss']:.0f} MB (peak {r['peak_rss']:.0f} MB)",
                f"< {TARGET_RSS_MB:.0f} MB",
                r["held_rss"] < TARGET_RSS_MB,
            )
            verdicts.add(
                f"RSS after serving scrapes, {label}",
                f"{r['rss']:.0f} MB",
                f"< {TARGET_RSS_MB:.0f} MB",
                r["rss"] < TARGET_RSS_MB,
            )
    return parts


REAL_FIGURES = (
    ("GET /metrics gzip, warm (median)", "gzip", "ms"),
    ("GET /metrics plain, warm (median)", "plain", "ms"),
    ("first GET /metrics after start", "first", "ms"),
    ("start to first /metrics answered", "start_to_first", "ms"),
    ("start to listening (/healthz)", "listening_s", "ms"),
    ("exposition size", "bytes", "kB"),
    ("samples", "samples", "n"),
    ("backfill (--once), wall time", "backfill_s", "s"),
    ("peak RSS of the backfill", "backfill_peak", "MB"),
    ("RSS after the first scrape", "held_rss", "MB"),
    ("RSS after the scrapes", "rss", "MB"),
    ("peak RSS of the served collector", "peak_rss", "MB"),
)
NO_SLOWER = ("gzip", "plain", "first", "start_to_first")


def render_real(
    real: dict[str, dict[str, Any]], dags: int, args: argparse.Namespace, verdicts: report.Verdicts
) -> list[str]:
    """The real collectors side by side (baseline first), with "no slower than the baseline"
    as the target of the scrape times; their verdicts go to `verdicts`."""
    variants = list(real)
    base = real[variants[0]] if len(variants) > 1 else None
    fmt = {
        "ms": report.ms,
        "kB": lambda v: f"{v / 1024:,.0f} kB",
        "n": lambda v: f"{v:,}",
        "s": lambda v: f"{v:.1f} s",
        "MB": lambda v: f"{v:.0f} MB",
    }
    rows = []
    for figure, key, unit in REAL_FIGURES:
        target = "-"
        if key in NO_SLOWER:
            target = "no slower than baseline" if base else "-"
            if key in ("gzip", "plain"):
                target += f", < {report.ms(TARGET_SCRAPE[10_000])}" if dags >= 10_000 else ""
        elif key in ("rss", "held_rss"):
            target = f"< {TARGET_RSS_MB:.0f} MB"
        rows.append((figure, *(fmt[unit](real[v][key]) for v in variants), target))
    now = real["current"]
    slack = 1.0 + args.noise
    for key in NO_SLOWER:
        figure = next(f for f, k, _ in REAL_FIGURES if k == key)
        if base is not None:
            verdicts.add(
                f"{figure}, {dags:,} DAGs, current vs baseline",
                f"{report.ms(now[key])} vs {report.ms(base[key])}",
                f"<= baseline x {slack:g}",
                now[key] <= base[key] * slack,
            )
        if key in ("gzip", "plain") and dags >= 10_000:
            verdicts.add(
                f"{figure}, {dags:,} DAGs, current",
                report.ms(now[key]),
                f"< {report.ms(TARGET_SCRAPE[10_000])}",
                now[key] < TARGET_SCRAPE[10_000],
            )
    verdicts.add(
        f"RSS after the scrapes, {dags:,} DAGs, current",
        f"{now['rss']:.0f} MB",
        f"< {TARGET_RSS_MB:.0f} MB",
        now["rss"] < TARGET_RSS_MB,
    )
    title = (
        f"Real collector (`impactwatch collector` processes) on a seeded {dags:,}-DAG Airflow DB,"
        f" state DB from a {args.backfill_days:g}-day backfill; warm = median of {args.scrapes},"
        f" each after {args.churn} scheduler steps and a poll cycle ({args.poll_interval:g} s)"
    )
    return [report.table(title, ("figure", *variants, "target"), rows)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="synthetic 100 and 1,000 DAGs only")
    parser.add_argument("--skip-service", action="store_true", help="synthetic state only")
    parser.add_argument("--service-only", action="store_true", help="no synthetic states")
    parser.add_argument("--baseline", metavar="COMMIT", help="also run that commit's collector")
    parser.add_argument("--service-dags", type=int, default=10_000)
    parser.add_argument("--runs-per-dag", type=int, default=4)
    parser.add_argument("--backfill-days", type=float, default=7.0)
    parser.add_argument("--poll-interval", type=float, default=2.0, help="the served collector's")
    parser.add_argument("--scrapes", type=int, default=3, help="warm scrapes of each kind")
    parser.add_argument("--churn", type=int, default=100, help="scheduler steps between scrapes")
    parser.add_argument(
        "--noise", type=float, default=0.1, help="'no slower' allows baseline x (1 + NOISE)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the seeded database")
    parser.add_argument("--reuse", action="store_true", help="reuse a kept database")
    parser.add_argument(
        "--what-if",
        action="store_true",
        help="also time a direct renderer of the histogram families and gzip levels",
    )
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _kind, dags, *flag = args.child
        print(json.dumps(child_synthetic(int(dags), flag == ["what-if"])))
        return 0
    sizes = (100, 1_000) if args.small else (100, 10_000)
    results = []
    for dags in () if args.service_only else sizes:
        print(f"synthetic state, {dags:,} DAGs", file=sys.stderr, flush=True)
        flag = ["what-if"] if args.what_if and dags == max(sizes) else []
        results.append(in_child("synthetic", str(dags), *flag))
    verdicts = report.Verdicts()
    parts = render(results, verdicts) if results else []
    if not (args.small or args.skip_service):
        parts += run_real(args, verdicts)
    parts.append(verdicts.render("Scrape benchmark: results"))
    print("\n\n".join(parts))
    print(f"\nload average (1, 5, 15 min) at the end {os.getloadavg()} on {os.cpu_count()} CPUs")
    return 0


def run_real(args: argparse.Namespace, verdicts: report.Verdicts) -> list[str]:
    """Seed (or reuse) the Airflow DB, run the baseline's collector and this tree's on it."""
    name = f"iw_bench_scrape_{args.service_dags}"
    spec = seeding.SeedSpec(
        dags=args.service_dags, runs_per_dag=args.runs_per_dag, interval_hours=24
    )
    codes: list[tuple[str, Path | None]] = []
    baseline = checkout(args.baseline) if args.baseline else None
    if baseline is not None:
        codes.append((f"baseline {args.baseline}", baseline))
    codes.append(("current", None))
    parts: list[str] = []
    try:
        if args.reuse and seeding.database_exists(name):
            print(f"reusing {name}", file=sys.stderr)
        else:
            seeded = seeding.build(name, spec)
            parts.append(f"seeded {seeded.name}: {seeded.spec.describe()} in {seeded.total:.1f} s")
        real: dict[str, dict[str, Any]] = {}
        with tempfile.TemporaryDirectory(prefix="iw-bench-scrape-") as tmp:
            work = Path(tmp)
            catalog = work / "catalog.yaml"
            catalog.write_text(yaml.safe_dump(catalog_dict(args.service_dags), sort_keys=False))
            for variant, code in codes:
                print(f"real collector ({variant}): backfill, restart, scrape", file=sys.stderr)
                real[variant] = real_collector(code, name, args.service_dags, catalog, args, work)
        parts = render_real(real, args.service_dags, args, verdicts) + parts
    finally:
        if baseline is not None:
            shutil.rmtree(baseline, ignore_errors=True)
        if not args.keep:
            seeding.drop_database(name)
    return parts


if __name__ == "__main__":
    sys.exit(main())
