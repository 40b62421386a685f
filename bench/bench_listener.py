"""Listener overhead per task: real Airflow task processes, plugin off vs on, collector up or down.

Each task runs in its own forked task-runner process, as a worker runs it (`supervise_task`,
`AirflowHome.run_dags(task_processes=True)`): on_starting, the task hooks, before_stopping, the
process exit. Configurations, interleaved round by round so machine load hits them alike:

- off: impactwatch installed, IMPACTWATCH_COLLECTOR_URL unset (no listener registered);
- up: a real collector (`CollectorService` + `serve`, SQLite state DB) on loopback;
- down, refused: nothing listens on the port;
- down, black hole: connections accepted, never answered;
- down, unreachable: connection attempts hang (a full accept queue drops them, as a firewall
  would); default back-off, shared by the host's task processes: only the first task pays;
- down, unreachable, no back-off: every task waits out the flush timeout (the worst case).

Per task try, three figures:

- in hooks: time inside the plugin's hooks in the task process (running + end + before_stopping),
  from the hook methods wrapped with timers (the plugin's direct cost);
- end: from the try's end_date (its state reported) to its process reaped by the supervisor;
  what a listener can add to a task's end, callbacks and process exit included;
- wall: from fork to reaped, the whole task (noisy: DAG parsing, start-up).

"added" compares a configuration's median/p99 with the `off` configuration's.

    .venv/bin/python bench/bench_listener.py                     # 3 rounds x 10 runs x 3 tasks
    .venv/bin/python bench/bench_listener.py --rounds 1 --runs 2 # smoke run, ~1 minute
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import report
from sqlalchemy import create_engine, text

from impactwatch.catalog.model import Catalog
from impactwatch.collector.airflow.schema import to_epoch
from impactwatch.collector.http_app import collector_app
from impactwatch.collector.service import CollectorService
from impactwatch.collector.settings import CollectorSettings
from impactwatch.devtools import airflow_home as af
from impactwatch.serving import Server, ServerLimits

DAG = "morning_reporting"  # three chained tasks
TARGET_UP = 0.005
HOOKS = ("on_task_instance_running", "on_task_instance_success", "before_stopping")
WORST = "down, unreachable, no back-off"
TARGET_DOWN = 0.050

# Run by Airflow's Python before the task wrapper: time the plugin's hooks (forked task
# processes inherit the wrapped class) into IMPACTWATCH_BENCH_HOOKS, one JSON line per call.
_HOOK_TIMER = """
import functools, json, os, time
from impactwatch.airflow_listeners import listener as _iw
_trace = os.environ["IMPACTWATCH_BENCH_HOOKS"]

def _timed(name, hook):
    @functools.wraps(hook)
    def wrapper(self, *args, **kwargs):
        started = time.perf_counter()
        try:
            return hook(self, *args, **kwargs)
        finally:
            spent = time.perf_counter() - started
            ti = args[1] if name != "before_stopping" else None  # pluggy passes positionally
            key = ti and [ti.run_id, ti.task_id, ti.map_index, ti.try_number]
            with open(_trace, "a") as f:
                row = {"pid": os.getpid(), "hook": name, "key": key, "s": spent}
                f.write(json.dumps(row) + "\\n")
    return wrapper

for _name in ("on_task_instance_running", "on_task_instance_success", "before_stopping"):
    setattr(_iw.ImpactwatchListener, _name, _timed(_name, getattr(_iw.ImpactwatchListener, _name)))
"""


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def p99(values: list[float]) -> float:
    """99th percentile, nearest rank."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(int(-(-0.99 * len(ordered) // 1)), 1) - 1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def hostile(unreachable: bool) -> Iterator[str]:
    """Accepts connections and never answers; `unreachable`: accepts nothing, queue full."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=0 if unreachable else 512)
    held = [listener]
    stop = threading.Event()
    if unreachable:
        held.append(socket.create_connection(listener.getsockname()))  # the queue is full
    else:
        listener.settimeout(0.2)

        def loop() -> None:
            while not stop.is_set():
                try:
                    held.append(listener.accept()[0])
                except (TimeoutError, OSError):
                    continue

        threading.Thread(target=loop, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        for sock in held:
            sock.close()


TOKEN = "bench-listener-token"  # the collector's intake is closed without one


@contextmanager
def collector(work: Path, airflow_db: str) -> Iterator[tuple[CollectorService, str]]:
    settings = CollectorSettings(airflow_db=airflow_db, state_db=f"sqlite:///{work / 'state.db'}")
    service = CollectorService(settings, Catalog())
    server = Server(
        collector_app(service, TOKEN, 1_048_576), "127.0.0.1", 0, ServerLimits(), name="collector"
    )
    server.start()
    try:
        yield service, f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()
        service.close()


def run_config(
    home: af.AirflowHome, env: dict[str, str], runs: int, work: Path
) -> list[dict[str, float]]:
    """`runs` runs of DAG in one Airflow process; per task try: in hooks, end, wall (seconds)."""
    trace = work / f"hooks-{time.monotonic_ns()}.jsonl"
    specs = [af.RunSpec(DAG, expect="success") for _ in range(runs)]
    timings: list[af.TaskTiming] = []
    with tempfile.TemporaryDirectory(dir=home.home, prefix="bench-") as scratch:
        spec_file, result_file = Path(scratch) / "specs.json", Path(scratch) / "results.json"
        spec_file.write_text(json.dumps([s.to_json() for s in specs]))
        timing_file = Path(scratch) / "timings.jsonl"
        extra = {
            **env,
            "IMPACTWATCH_TASK_PROCESSES": "1",
            "IMPACTWATCH_TASK_TIMINGS": str(timing_file),
            "IMPACTWATCH_BENCH_HOOKS": str(trace),
        }
        argv = [
            str(home.python_bin),
            "-c",
            _HOOK_TIMER + af._TASK_WRAPPER,
            str(af._DAG_RUNNER),
            str(spec_file),
            str(result_file),
        ]
        home._run(argv, f"bench {DAG} x{runs}", 120 + 30 * runs, extra)
        for line in timing_file.read_text().splitlines():
            timings.append(af.TaskTiming(**json.loads(line)))
        states = {r["state"] for r in json.loads(result_file.read_text())}
        if states != {"success"}:
            raise SystemExit(f"runs ended {states}, expected success")
    ends = task_ends(home, timings)
    spent: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))  # by process
    task_of: dict[int, tuple] = {}
    if trace.exists():
        for line in trace.read_text().splitlines():
            row = json.loads(line)
            spent[row["pid"]][row["hook"]] += row["s"]
            if row["key"]:
                task_of[row["pid"]] = tuple(row["key"])
    by_task = {key: spent[pid] for pid, key in task_of.items()}
    rows = []
    for t in timings:
        key = (t.run_id, t.task_id, t.map_index, t.try_number)
        hooks = by_task.get(key, {})
        row = {"hooks": sum(hooks.values()), "end": ends[key], "wall": t.seconds}
        row.update({f"hook:{name}": v for name, v in hooks.items()})
        rows.append(row)
    return rows


def task_ends(home: af.AirflowHome, timings: list[af.TaskTiming]) -> dict[tuple, float]:
    run_ids = ", ".join(f"'{r}'" for r in {t.run_id for t in timings})
    engine = create_engine(home.db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT run_id, task_id, map_index, try_number, end_date FROM task_instance"
                    f" WHERE run_id IN ({run_ids})"
                )
            ).all()
    finally:
        engine.dispose()
    end = {(r.run_id, r.task_id, r.map_index, r.try_number): to_epoch(r.end_date) for r in rows}
    return {
        (t.run_id, t.task_id, t.map_index, t.try_number): t.finished_at
        - end[(t.run_id, t.task_id, t.map_index, t.try_number)]
        for t in timings
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=10, help=f"runs of {DAG} per config, round")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="iw-bench-listener-") as tmp:
        work = Path(tmp)
        home = af.AirflowHome(work / "airflow", f"sqlite:///{work / 'airflow' / 'airflow.db'}")
        log("Airflow: migrate, reserialize")
        home.migrate()
        home.reserialize()
        state_dir = work / "state"
        state_dir.mkdir()
        with (
            collector(work, home.db_url) as (service, up_url),
            hostile(unreachable=False) as hole,
            hostile(unreachable=True) as unreachable,
        ):
            common = {"IMPACTWATCH_LISTENER_STATE_DIR": str(state_dir), "IMPACTWATCH_TOKEN": TOKEN}
            refused = f"http://127.0.0.1:{free_port()}"
            configs = {
                "off": {},
                "up": {**common, "IMPACTWATCH_COLLECTOR_URL": up_url},
                "down, refused": {**common, "IMPACTWATCH_COLLECTOR_URL": refused},
                "down, black hole": {**common, "IMPACTWATCH_COLLECTOR_URL": hole},
                "down, unreachable": {**common, "IMPACTWATCH_COLLECTOR_URL": unreachable},
                WORST: {
                    **common,
                    "IMPACTWATCH_COLLECTOR_URL": unreachable,
                    "IMPACTWATCH_LISTENER_BACKOFF": "0",
                },
            }
            samples: dict[str, list[dict[str, float]]] = {name: [] for name in configs}
            for round_no in range(1, args.rounds + 1):
                for name, env in configs.items():
                    log(f"round {round_no}/{args.rounds}: {name}")
                    for f in state_dir.glob("*.backoff"):
                        f.unlink()  # each configuration starts without a back-off
                    samples[name] += run_config(home, env, args.runs, work)
            received = service.registry.get_sample_value(
                "impactwatch_collector_events_total", {"source": "listener", "outcome": "new"}
            )
    load_after = os.getloadavg()
    print(render(samples, args, received, load_before, load_after))
    return 0


def render(
    samples: dict[str, list[dict[str, float]]],
    args: argparse.Namespace,
    received: float | None,
    load_before: tuple[float, float, float],
    load_after: tuple[float, float, float],
) -> str:
    base = samples["off"]
    b_end = [s["end"] for s in base]
    b_wall = [s["wall"] for s in base]
    rows = []
    added: dict[str, dict[str, float]] = {}
    for name, rows_ in samples.items():
        hooks = [s["hooks"] for s in rows_]
        end = [s["end"] for s in rows_]
        wall = [s["wall"] for s in rows_]
        added[name] = {
            "hooks_median": report.median(hooks),
            "end_median": report.median(end) - report.median(b_end),
            "end_p99": p99(end) - p99(b_end),
            "end_max": max(end) - max(b_end),
            "wall_median": report.median(wall) - report.median(b_wall),
        }
        rows.append(
            (
                name,
                len(rows_),
                report.ms(report.median(hooks)),
                report.ms(p99(hooks)),
                report.ms(report.median(end)),
                report.ms(p99(end)),
                report.ms(added[name]["end_median"]),
                report.ms(added[name]["end_p99"]),
                report.ms(report.median(wall)),
                report.ms(added[name]["wall_median"]),
            )
        )
    header = (
        "config",
        "tasks",
        "in hooks med",
        "in hooks p99",
        "end med",
        "end p99",
        "end added med",
        "end added p99",
        "wall med",
        "wall added med",
    )
    title = (
        f"Listener overhead per task ({DAG}, forked task processes, {args.rounds} rounds x "
        f"{args.runs} runs x 3 tasks per config; load avg {load_before[0]:.1f} -> "
        f"{load_after[0]:.1f} on {os.cpu_count()} cores)"
    )
    out = [report.table(title, header, rows), ""]
    verdicts = report.Verdicts()
    up = added["up"]
    verdicts.add(
        "median time in hooks per task, collector up",
        report.ms(up["hooks_median"]),
        "< 5 ms",
        up["hooks_median"] < TARGET_UP,
    )
    verdicts.add(
        "median added at a task's end, collector up",
        report.ms(up["end_median"]),
        "< 5 ms",
        up["end_median"] < TARGET_UP,
    )
    for name in ("down, refused", "down, black hole", "down, unreachable", WORST):
        worst = added[name]["end_p99"]
        verdicts.add(
            f"p99 added at a task's end, {name}",
            report.ms(worst),
            "< 50 ms",
            worst < TARGET_DOWN,
        )
    out.append(verdicts.render())
    by_hook = []
    for name in ("up", WORST):
        for hook in HOOKS:
            values = [s[f"hook:{hook}"] for s in samples[name] if f"hook:{hook}" in s]
            if values:
                by_hook.append(
                    (
                        name,
                        hook,
                        len(values),
                        report.ms(report.median(values)),
                        report.ms(p99(values)),
                    )
                )
    out.append("")
    out.append(
        report.table("Time in each hook", ("config", "hook", "calls", "median", "p99"), by_hook)
    )
    out.append(f"\nlistener events stored by the collector (up): {int(received or 0)} new")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
