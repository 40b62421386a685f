"""A pipeline's latest failure, in facts the on-call needs: which tasks failed, after how many
tries, with what error, since when. Pure: built from the runs and tries the state DB holds
(both sources merged), served as JSON by `GET /v1/failures` (http_app.py) for the router.

The error type is the exception's class name the listener reports; Airflow's DB does not keep
it, so with the poller alone it is None and the router says so.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from impactwatch.collector.events import DagRun, TaskTry

MAX_TASKS = 20  # failed tasks listed per run; `more_tasks` counts the rest


@dataclass(frozen=True)
class FailedTask:
    task_id: str
    map_index: int
    tries: int  # tries made (the last try's number)
    error_type: str | None  # of the last failed try that has one
    failed_at: float | None  # end of its last try


@dataclass(frozen=True)
class FailureReport:
    dag_id: str
    run_id: str
    run_start: float | None
    run_end: float | None
    failing_since: float | None  # start of the first failed run after the last success
    failed_runs: int  # failed runs since the last success, this one included
    last_success: float | None
    recovered: bool  # a successful run ended after this failure
    tasks: list[FailedTask] = field(default_factory=list)
    more_tasks: int = 0
    upstream_failed: int = 0  # tasks not run because of these

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def failed_tasks(tries: list[TaskTry]) -> tuple[list[FailedTask], int]:
    """The tasks (task_id, map_index) whose last try failed, first failed first; and the
    number of tasks left `upstream_failed`."""
    last: dict[tuple[str, int], TaskTry] = {}
    error: dict[tuple[str, int], str] = {}
    for t in sorted(tries, key=lambda t: t.try_number):
        key = (t.task_id, t.map_index)
        last[key] = t
        if t.error_type:
            error[key] = t.error_type
    failed = [
        FailedTask(key[0], key[1], max(t.try_number, 1), error.get(key), t.end)
        for key, t in last.items()
        if t.state == "failed"
    ]
    failed.sort(key=lambda f: (f.failed_at is None, f.failed_at or 0.0, f.task_id, f.map_index))
    upstream = sum(t.state == "upstream_failed" for t in last.values())
    return failed, upstream


def failure_report(
    run: DagRun,
    tries: list[TaskTry],
    *,
    last_success: float | None,
    failing_since: float | None,
    failed_runs: int,
) -> FailureReport:
    """The report of `run` (a failed run) from its stored tries and the DAG's history."""
    failed, upstream = failed_tasks(tries)
    ended = run.end or run.start or 0.0
    return FailureReport(
        dag_id=run.dag_id,
        run_id=run.run_id,
        run_start=run.start,
        run_end=run.end,
        failing_since=failing_since if failing_since is not None else run.start,
        failed_runs=max(failed_runs, 1),
        last_success=last_success,
        recovered=last_success is not None and last_success > ended,
        tasks=failed[:MAX_TASKS],
        more_tasks=max(len(failed) - MAX_TASKS, 0),
        upstream_failed=upstream,
    )
