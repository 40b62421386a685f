"""The failure in words: which tasks failed, after how many tries, with what error, since when,
and where the try's log and the run are in Airflow's UI. Pure.

Facts come from the collector (`router/failures.py`); without them the message says what the
alert says. Airflow 3 UI addresses, as Airflow 3.3 builds them itself
(`TaskInstance.log_url`, `utils.helpers.build_airflow_dagrun_url`):
`/dags/{dag_id}/runs/{run_id}` for a run and
`/dags/{dag_id}/runs/{run_id}/tasks/{task_id}[/mapped/{map_index}]?try_number={n}` for a
try's log (the task instance page opens on its Logs tab). Every part is percent-encoded, and
URLs ride in buttons (`escape.safe_url`), never in mrkdwn.
"""

from __future__ import annotations

from urllib.parse import quote

from impactwatch.contract import alerts
from impactwatch.router import escape as esc
from impactwatch.router.failures import FailedTask, FailureReport
from impactwatch.router.model import Incident
from impactwatch.router.wording import human, main_alert, sentence

MAX_TASKS = 5  # failed tasks named in the message; the rest are counted
NO_LISTENER = (
    "error type not recorded: Airflow's DB keeps no exception, only the impactwatch listener "
    "reports it"
)


def failure_dag(incident: Incident) -> str | None:
    """The DAG whose failure the incident is about, when its main alert is a failed run."""
    alert = main_alert(incident)
    if alert is None or alert.kind != alerts.FAILURE or alert.status != "firing":
        return None
    dag = alert.labels.get(alerts.DAG_ID) or (
        incident.subject.name if incident.subject.kind == "dag" else ""
    )
    return dag or None


def tries(n: int) -> str:
    return "1 try" if n == 1 else f"{n} tries"


def task_name(task: FailedTask) -> str:
    shown = task.task_id if task.map_index < 0 else f"{task.task_id}[{task.map_index}]"
    return esc.code(shown, 200)


def task_line(task: FailedTask) -> str:
    """ "`validate_market_data` failed after 3 tries: `ConnectionError`, <date>"."""
    error = esc.code(task.error_type, 120) if task.error_type else "error type not recorded"
    when = f", {esc.date(task.failed_at)}" if task.failed_at is not None else ""
    return f"{task_name(task)} failed after {tries(task.tries)}: {error}{when}"


def failure_text(report: FailureReport, now: float) -> str:
    """The "What failed" section: tasks, tries, errors, since when, what did not run."""
    lines = [f"*What failed* (run {esc.code(report.run_id, 120)})"]
    shown = report.tasks[:MAX_TASKS]
    lines.extend(f"• {task_line(t)}" for t in shown)
    hidden = len(report.tasks) - len(shown) + report.more_tasks
    if hidden:
        lines.append(f"• … and {hidden} more failed task(s)")
    if not report.tasks:
        lines.append("• no failed task recorded (the run itself was marked failed)")
    if report.upstream_failed:
        lines.append(f"{report.upstream_failed} downstream task(s) did not run (upstream failed).")
    if report.tasks and not any(t.error_type for t in report.tasks):
        lines.append(f"_{sentence(NO_LISTENER)}._")
    since = report.failing_since
    if since is not None:
        runs = "" if report.failed_runs <= 1 else f", {report.failed_runs} failed runs in a row"
        lines.append(f"Failing since {esc.date(since)} ({human(now - since)}{runs}).")
    if report.last_success is not None:
        lines.append(f"Last successful run ended {esc.date(report.last_success)}.")
    else:
        lines.append("No successful run known.")
    return "\n".join(lines)


def unknown_text() -> str:
    """Said when the collector gave no details (unreachable, or not configured)."""
    return (
        "Which task failed and why is not known here (the collector's failure details are "
        "unavailable): open the pipeline in Airflow."
    )


def run_url(airflow_url: str, report: FailureReport) -> str | None:
    path = f"/dags/{quote(report.dag_id, safe='')}/runs/{quote(report.run_id, safe='')}"
    return esc.safe_url(airflow_url.rstrip("/") + path)


def log_url(airflow_url: str, report: FailureReport, task: FailedTask) -> str | None:
    """The try's log: the task instance page of that try (Airflow opens it on Logs)."""
    path = (
        f"/dags/{quote(report.dag_id, safe='')}/runs/{quote(report.run_id, safe='')}"
        f"/tasks/{quote(task.task_id, safe='')}"
    )
    if task.map_index >= 0:
        path += f"/mapped/{task.map_index}"
    if task.tries > 0:
        path += f"?try_number={task.tries}"
    return esc.safe_url(airflow_url.rstrip("/") + path)


def failure_links(airflow_url: str | None, report: FailureReport) -> list[tuple[str, str, str]]:
    """(action id, label, url) of the first failed try's log and the run."""
    if not airflow_url:
        return []
    out = []
    if report.tasks:
        url = log_url(airflow_url, report, report.tasks[0])
        if url:
            out.append(("iw_link_log", "Log of the failed try", url))
    url = run_url(airflow_url, report)
    if url:
        out.append(("iw_link_run", "Failed run in Airflow", url))
    return out
