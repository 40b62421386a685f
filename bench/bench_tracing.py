"""What OpenTelemetry traces cost the collector's poll thread, and whether a burst arrives whole.

`RunTracer.trace_finished` is what a poll cycle calls: it checks the state DB's "traced" marks,
reads the runs' tries from the state DB, builds the spans (`run_trace`), starts and ends them
through the SDK into a `BatchSpanProcessor` (OTLP/HTTP exporter) and marks the runs traced.
Runs of 25 task tries each (the seeded DAG shape), sent to the tests' local OTLP receiver
(tests/support/otlp_receiver.py) and to a refused port:

- per-run poll-thread time for 1 run, 30 runs (what finishes in a 10 s cycle at 10,000 hourly
  DAGs) and 78 runs (a full span queue: 2048 spans) handed over at once;
- a burst of 500 finished runs (13,000 spans, six queues' worth): calls every 0.5 s (a fast poll
  loop) until the backlog is empty, then every span must be at the receiver, none dropped.

    .venv/bin/python bench/bench_tracing.py            # ~30 s
    .venv/bin/python bench/bench_tracing.py --quick    # no burst
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

import report

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.support: the receiver the tests use

from impactwatch.catalog.model import Catalog  # noqa: E402
from impactwatch.collector.events import Batch, DagRun, TaskTry  # noqa: E402
from impactwatch.collector.state.store import Store, make_engine  # noqa: E402
from impactwatch.collector.tracing.export import RunTracer  # noqa: E402
from tests.support.otlp_receiver import OtlpReceiver  # noqa: E402

TASKS = 25
NOW = 1_795_500_000.0
# s of poll thread per finished 25-task run: 30 runs a 10 s cycle (10,000 hourly DAGs) then
# cost <= 0.15 s, 1.5% of the cycle
TARGET_PER_RUN = 0.005
CATALOG = Catalog.model_validate(
    {
        "datasets": {"d0": {"produced_by": "dag_0.task_24"}},
        "pipelines": {"dag_0": {"team": "platform", "max_duration": "1h"}},
        "cost": {"pools": {"heavy_etl": {"cpu": 6, "memory_gb": 12}}},
    }
)


def runs_with_tries(n: int, offset: int) -> tuple[list[DagRun], list[TaskTry]]:
    runs, tries = [], []
    for i in range(offset, offset + n):
        dag, run_id = f"dag_{i % 100}", f"scheduled__{i}"
        start = NOW - 3000 + i % 600
        runs.append(
            DagRun(
                dag_id=dag, run_id=run_id, state="success", run_type="scheduled",
                logical_date=start, run_after=start, queued_at=start, start=start, end=NOW,
            )
        )  # fmt: skip
        for k in range(TASKS):
            t0 = start + k * 10
            tries.append(
                TaskTry(
                    dag_id=dag, run_id=run_id, task_id=f"task_{k}", map_index=-1, try_number=1,
                    state="success", start=t0, end=t0 + 9, queued=t0 - 1, duration=9.0,
                    pool="heavy_etl" if k == 0 else "default_pool", queue="default",
                    operator="PythonOperator",
                )
            )  # fmt: skip
    return runs, tries


def refused() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def measure(endpoint: str, sizes: list[int], folder: Path) -> list[tuple[int, float]]:
    """(runs, seconds in trace_finished) for each batch size, on a fresh tracer and state DB."""
    os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
    out = []
    offset = 0
    for n in sizes:
        store = Store(make_engine(f"sqlite:///{folder / f'state-{time.monotonic_ns()}.db'}"))
        tracer = RunTracer.from_env(max_age=86400)
        assert tracer is not None
        runs, tries = runs_with_tries(n, offset)
        offset += n
        store.ingest(Batch(task_tries=tries, dag_runs=runs))
        started = time.perf_counter()
        sent = tracer.trace_finished(runs, store, CATALOG, NOW)
        took = time.perf_counter() - started
        assert sent == n, f"{sent} of {n} runs sent at once"
        out.append((n, took))
        tracer.close(timeout=1.0)
        store.close()
    return out


def burst(receiver: OtlpReceiver, n: int, folder: Path) -> tuple[int, int, float, int]:
    """(spans received, calls until the backlog emptied, seconds until all arrived, expected)."""
    os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver.url
    store = Store(make_engine(f"sqlite:///{folder / 'burst.db'}"))
    tracer = RunTracer.from_env(max_age=86400)
    assert tracer is not None
    runs, tries = runs_with_tries(n, 100_000)
    store.ingest(Batch(task_tries=tries, dag_runs=runs))
    before = len(receiver.spans)
    want = n * (TASKS + 1)
    started = time.perf_counter()
    calls = 1
    tracer.trace_finished(runs, store, CATALOG, NOW)
    while tracer.backlog:
        time.sleep(0.5)
        tracer.trace_finished([], store, CATALOG, NOW)
        calls += 1
    receiver.wait_for(lambda s: len(s) >= before + want, timeout=120)
    took = time.perf_counter() - started
    tracer.close()
    store.close()
    return len(receiver.spans) - before, calls, took, want


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="no burst")
    args = parser.parse_args()
    sizes = [1, 30, 78]
    os.environ["OTEL_EXPORTER_OTLP_TIMEOUT"] = "5"
    verdicts = report.Verdicts()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        receiver = OtlpReceiver()
        try:
            live = measure(receiver.url, sizes, folder)
            burst_result = None if args.quick else burst(receiver, 500, folder)
        finally:
            receiver.stop()
        dead = measure(refused(), sizes, folder)
    rows = []
    for (n, up), (_, down) in zip(live, dead, strict=True):
        rows.append((n, n * (TASKS + 1), report.ms(up), report.ms(up / n), report.ms(down / n)))
        for label, took in (("endpoint up", up), ("endpoint refusing", down)):
            verdicts.add(
                f"poll-thread time per finished run, {n} at once, {label}",
                report.ms(took / n),
                f"<= {report.ms(TARGET_PER_RUN)}",
                took / n <= TARGET_PER_RUN,
            )
    print(
        report.table(
            f"trace_finished: traced marks, tries, build, SDK hand-off ({TASKS} tries a run)",
            ("runs", "spans", "total", "per run (up)", "per run (refused)"),
            rows,
        )
    )
    if burst_result is not None:
        got, calls, took, want = burst_result
        print()
        print(f"burst: {got} of {want} spans at the receiver after {took:.1f} s, {calls} calls")
        verdicts.add("burst of 500 runs: spans at the receiver", f"{got}", f"{want}", got == want)
    print()
    print(verdicts.render())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
