"""The failure in words (router/failure_words.py) and in the owning team's message."""

from __future__ import annotations

from urllib.parse import urlsplit

from impactwatch.router import failure_words as fw
from impactwatch.router.failures import FailedTask, FailureReport
from impactwatch.router.render import render_incident
from tests.unit.test_router_render import HOSTILE, all_text, ctx, incident, state
from tests.unit.test_router_support import T0

RUN_ID = "scheduled__2027-01-20T06:00:00+00:00"


def report(**kw: object) -> FailureReport:
    values: dict = {
        "dag_id": "market_data_ingest",
        "run_id": RUN_ID,
        "run_start": T0 - 900,
        "run_end": T0 - 600,
        "failing_since": T0 - 4500,
        "failed_runs": 2,
        "last_success": T0 - 5000,
        "tasks": [
            FailedTask(
                task_id="validate_market_data",
                tries=3,
                error_type="ConnectionError",
                failed_at=T0 - 610,
            ),
            FailedTask(task_id="fetch", map_index=4, tries=1, failed_at=T0 - 700),
        ],
        "upstream_failed": 2,
    }
    values.update(kw)
    return FailureReport(**values)


def failed_run(**kw: object):  # type: ignore[no-untyped-def]
    alert = state(
        "dag:market_data_ingest",
        "markets",
        alertname="PipelineRunFailed",
        kind="failure",
        severity="critical",
        labels={"dag_id": "market_data_ingest"},
        annotations={"runbook_url": "http://127.0.0.1:9465/runbooks/pipeline-run-failed.md"},
        **kw,
    )
    return incident(alert, key="dag:market_data_ingest", severity="critical")


def buttons(rendered) -> dict[str, str]:  # type: ignore[no-untyped-def]
    found = [e for b in rendered.blocks if b["type"] == "actions" for e in b["elements"]]
    return {e["text"]["text"]: e.get("url", "") for e in found}


def test_the_failed_tasks_tries_errors_and_since_when() -> None:
    text = fw.failure_text(report(), T0)
    assert f"*What failed* (run `{RUN_ID}`)" in text
    assert "• `validate_market_data` failed after 3 tries: `ConnectionError`, <!date^" in text
    assert "• `fetch[4]` failed after 1 try: error type not recorded" in text
    assert "2 downstream task(s) did not run (upstream failed)." in text
    assert "Failing since <!date^" in text and "(1 h 15 min, 2 failed runs in a row)" in text
    assert "Last successful run ended <!date^" in text
    assert "only the impactwatch listener" not in text  # one task has its error type


def test_without_the_listener_it_says_why_the_error_type_is_missing() -> None:
    bare = [FailedTask(task_id="validate_market_data", tries=1, failed_at=T0 - 610)]
    text = fw.failure_text(report(tasks=bare, last_success=None, failed_runs=1), T0)
    assert "failed after 1 try: error type not recorded" in text
    assert "only the impactwatch listener reports it" in text
    assert "No successful run known." in text and "failed runs in a row" not in text


def test_airflow_3_links_to_the_try_log_and_the_run_every_part_encoded() -> None:
    links = fw.failure_links("http://airflow:8080/", report())
    assert links == [
        (
            "iw_link_log",
            "Log of the failed try",
            "http://airflow:8080/dags/market_data_ingest/runs/"
            "scheduled__2027-01-20T06%3A00%3A00%2B00%3A00/tasks/validate_market_data"
            "?try_number=3",
        ),
        (
            "iw_link_run",
            "Failed run in Airflow",
            "http://airflow:8080/dags/market_data_ingest/runs/"
            "scheduled__2027-01-20T06%3A00%3A00%2B00%3A00",
        ),
    ]
    mapped = report(tasks=[FailedTask(task_id="fetch", map_index=4, tries=2)])
    url = fw.failure_links("http://airflow:8080", mapped)[0][2]
    assert urlsplit(url).path.endswith("/tasks/fetch/mapped/4")
    assert urlsplit(url).query == "try_number=2"
    assert fw.failure_links(None, report()) == []  # no Airflow UI known: no buttons


def test_the_owning_teams_message_carries_the_failure_and_its_buttons() -> None:
    out = render_incident(ctx(), failed_run(), T0, report())
    text = all_text(out)
    assert "Latest run failed; failing since" in text  # the alert's own words stay
    assert "`validate_market_data` failed after 3 tries: `ConnectionError`" in text
    got = buttons(out)
    assert got["Log of the failed try"].endswith("/tasks/validate_market_data?try_number=3")
    assert got["Failed run in Airflow"].startswith("http://airflow:8080/dags/market_data_ingest/")
    assert got["Runbook"] == "http://127.0.0.1:9465/runbooks/pipeline-run-failed.md"


def test_no_details_from_the_collector_says_so_and_a_resolved_one_says_nothing() -> None:
    text = all_text(render_incident(ctx(), failed_run(), T0, None))
    assert "failure details are unavailable" in text
    assert "What failed" not in text
    over = failed_run(status="resolved", ends_at=T0 - 10)
    over.status, over.resolved_at = "resolved", T0 - 10
    text = all_text(render_incident(ctx(), over, T0, report()))
    assert "What failed" not in text and "unavailable" not in text
    stale = incident(state("dataset:market_data", "markets"))  # not a failure: nothing added
    assert "What failed" not in all_text(render_incident(ctx(), stale, T0, report()))


def test_ids_and_error_names_from_the_collector_cannot_ping_or_link() -> None:
    hostile = report(
        run_id=HOSTILE,
        tasks=[FailedTask(task_id="t", tries=1, error_type=HOSTILE)],
    )
    text = all_text(render_incident(ctx(), failed_run(), T0, hostile))
    assert "<!channel>" not in text and "<@U999>" not in text and "<https://evil" not in text
    url = buttons(render_incident(ctx(), failed_run(), T0, hostile))["Failed run in Airflow"]
    assert "<" not in url and " " not in url and "|" not in url
