"""A DAG's latest failure from the tries both sources stored (collector/failures.py)."""

from __future__ import annotations

from impactwatch.collector.events import DagRun, TaskTry
from impactwatch.collector.failures import MAX_TASKS, failure_report


def attempt(task: str, n: int, state: str, end: float, **kw: object) -> TaskTry:
    return TaskTry(
        dag_id="d", run_id="r2", task_id=task, map_index=kw.pop("map_index", -1),  # type: ignore[arg-type]
        try_number=n, state=state, end=end, **kw,  # type: ignore[arg-type]
    )  # fmt: skip


RUN = DagRun(dag_id="d", run_id="r2", state="failed", start=1000.0, end=1300.0)


def test_the_failed_tasks_their_tries_and_the_error_of_the_last_failed_try() -> None:
    tries = [
        attempt("extract", 1, "success", 1010.0),
        attempt("validate", 1, "failed", 1100.0, error_type="TimeoutError"),
        attempt("validate", 2, "failed", 1200.0, error_type="ConnectionError"),
        attempt("validate", 3, "failed", 1290.0),  # the poller's sighting: no error type
        attempt("fetch", 1, "failed", 1050.0, map_index=2, error_type="KeyError"),
        attempt("publish", 1, "upstream_failed", 1295.0),
        attempt("report", 1, "upstream_failed", 1295.0),
    ]
    report = failure_report(RUN, tries, last_success=900.0, failing_since=990.0, failed_runs=2)
    got = [(t.task_id, t.map_index, t.tries, t.error_type, t.failed_at) for t in report.tasks]
    assert got == [
        ("fetch", 2, 1, "KeyError", 1050.0),  # first failed first
        ("validate", -1, 3, "ConnectionError", 1290.0),
    ]
    assert report.upstream_failed == 2
    assert (report.failing_since, report.failed_runs, report.recovered) == (990.0, 2, False)


def test_a_retry_that_succeeded_is_no_failed_task() -> None:
    tries = [attempt("load", 1, "failed", 1100.0, error_type="OSError")]
    tries.append(attempt("load", 2, "success", 1200.0))
    tries.append(attempt("other", 1, "failed", 1250.0))
    report = failure_report(RUN, tries, last_success=None, failing_since=None, failed_runs=0)
    assert [(t.task_id, t.error_type) for t in report.tasks] == [("other", None)]
    # no success known: failing since the run's start, one failed run at least
    assert (report.failing_since, report.failed_runs, report.last_success) == (1000.0, 1, None)


def test_a_later_success_marks_it_recovered_and_the_list_is_bounded() -> None:
    tries = [attempt(f"t{i:03d}", 1, "failed", 1100.0 + i) for i in range(MAX_TASKS + 7)]
    report = failure_report(RUN, tries, last_success=2000.0, failing_since=None, failed_runs=0)
    assert report.recovered
    assert len(report.tasks) == MAX_TASKS and report.more_tasks == 7
    assert report.to_json()["tasks"][0] == {
        "task_id": "t000", "map_index": -1, "tries": 1, "error_type": None, "failed_at": 1100.0,
    }  # fmt: skip
