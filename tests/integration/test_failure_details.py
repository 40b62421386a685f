"""The failure in words, end to end: a real Airflow run fails (with the listener, and with the
poller alone), the collector stores it and serves GET /v1/failures, and the router, asked by
Alertmanager's webhook payload, renders the owning team's message from it."""

from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from impactwatch.catalog.loader import load_catalog
from impactwatch.devtools.airflow_home import AirflowHome, RunSpec
from impactwatch.router.failures import FailureSource
from impactwatch.router.payload import parse_notification
from impactwatch.router.service import RouterService
from impactwatch.router.settings import RouterSettings
from impactwatch.router.sinks import ConsoleSink
from tests.integration.helpers import (
    EXAMPLE_CATALOG,
    catch_up,
    collector_with_intake,
    make_service,
    serving,
)
from tests.integration.test_listener_airflow import TOKEN, plugin_env, run
from tests.unit.test_router_support import alert, body

pytestmark = pytest.mark.integration
AIRFLOW_UI = "http://127.0.0.1:28080"

# Airflow's own address of a try's log (TaskInstance.log_url), computed inside Airflow.
LOG_URL = """
import json, sys
from sqlalchemy import select
from airflow import settings
from airflow.models import TaskInstance
settings.configure_orm()
session = settings.Session()
ti = session.scalars(select(TaskInstance).where(TaskInstance.dag_id == sys.argv[1],
     TaskInstance.run_id == sys.argv[2], TaskInstance.task_id == sys.argv[3])).one()
print(json.dumps(ti.log_url))
"""


@pytest.fixture(scope="module")
def home(airflow_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> AirflowHome:
    folder = tmp_path_factory.mktemp("airflow-failures")
    home = AirflowHome(folder, f"sqlite:///{folder / 'airflow.db'}", airflow_bin=airflow_bin)
    home.migrate()
    home.reserialize()
    return home


def routed_message(collector: str, tmp_path: Path, dag_id: str) -> dict:
    """What the router posts for a firing PipelineRunFailed on `dag_id`, asking `collector`."""
    settings = RouterSettings(
        state_db=f"sqlite:///{tmp_path / 'router.db'}",
        collector_url=collector,
        airflow_url=AIRFLOW_UI,
        settle_seconds=0,
        jsonl_path=str(tmp_path / "messages.jsonl"),
    )
    sink = ConsoleSink(settings.jsonl_path, stream=open("/dev/null", "w"))  # noqa: SIM115
    service = RouterService(settings, load_catalog(EXAMPLE_CATALOG), sink=sink)
    try:
        team = "compliance" if dag_id == "regulatory_submission" else "markets"
        firing = alert(
            "PipelineRunFailed", kind="failure", severity="critical", dag_id=dag_id, team=team
        )
        service.handle(parse_notification(body([firing]), time.time()))
        assert service.worker.drain(30, everything=True)
        lookups = dict(service.stats.failure_lookups)
    finally:
        service.close()
    posts = [json.loads(line) for line in Path(settings.jsonl_path).read_text().splitlines()]
    primary = [p for p in posts if p["method"] == "chat.postMessage" and not p["thread_ts"]]
    assert len(primary) == 1, posts
    return {**primary[0], "lookups": lookups}


def words(message: dict) -> str:
    return json.dumps(message["blocks"])


def link(message: dict, label: str) -> str:
    for block in message["blocks"]:
        for element in block.get("elements", []) if block["type"] == "actions" else []:
            if element["text"]["text"] == label and "url" in element:
                return element["url"]
    raise AssertionError(f"no {label!r} button")


def test_a_failed_run_seen_by_the_listener_is_told_with_task_tries_error_and_log(
    home: AirflowHome, tmp_path: Path
) -> None:
    spec = RunSpec(
        "regulatory_submission", conf={"fail_always": ["submit_to_regulator"]}, expect="failed"
    )
    with collector_with_intake(home.db_url, tmp_path, TOKEN) as (service, base):
        env = plugin_env(base, tmp_path / "listener")
        (result,), _ = run(home, [spec], env, task_processes=True)
        catch_up(service)
        report = FailureSource(base).report("regulatory_submission")
        assert report is not None
        assert report.run_id == result.run_id
        [task] = report.tasks
        assert (task.task_id, task.tries, task.error_type) == (
            "submit_to_regulator", 2, "ScriptedFailure",
        )  # fmt: skip
        assert requests.get(f"{base}/v1/failures", params={"dag_id": "nope"}).status_code == 404
        bad = requests.get(f"{base}/v1/failures", params={"dag_id": "a b"})
        assert bad.status_code == 400 and "dag_id" in bad.json()["error"]
        message = routed_message(base, tmp_path, "regulatory_submission")
    text = words(message)
    assert "`submit_to_regulator` failed after 2 tries: `ScriptedFailure`" in text
    assert f"run `{result.run_id}`" in text and "Failing since" in text
    assert message["lookups"] == {"ok": 1}
    # The log button opens the page Airflow itself links a try's log to.
    airflow_own = json.loads(
        home.python("-c", LOG_URL, "regulatory_submission", result.run_id, "submit_to_regulator")
        .stdout.strip().splitlines()[-1]
    )  # fmt: skip
    ours = urlsplit(link(message, "Log of the failed try"))
    theirs = urlsplit(airflow_own)
    assert (ours.path, ours.query) == (theirs.path, theirs.query)
    assert ours.query == "try_number=2"
    run_page = urlsplit(link(message, "Failed run in Airflow"))
    assert ours.path.startswith(run_page.path + "/tasks/")
    assert link(message, "Runbook").startswith("https://runbooks.example/")


def test_with_the_poller_alone_the_error_type_is_said_to_be_unknown(
    airflow_sqlite_url: str, tmp_path: Path
) -> None:
    service = make_service(airflow_sqlite_url, tmp_path)
    try:
        catch_up(service)
        with serving(service, None) as base:
            report = FailureSource(base).report("market_data_ingest")
            assert report is not None
            assert [(t.task_id, t.tries, t.error_type) for t in report.tasks] == [
                ("validate_market_data", 1, None)
            ]
            assert report.last_success is not None and report.upstream_failed >= 1
            message = routed_message(base, tmp_path, "market_data_ingest")
    finally:
        service.close()
    text = words(message)
    assert "`validate_market_data` failed after 1 try: error type not recorded" in text
    assert "only the impactwatch listener reports it" in text


def test_without_an_answer_from_the_collector_the_message_says_so(tmp_path: Path) -> None:
    message = routed_message("http://127.0.0.1:9", tmp_path, "market_data_ingest")  # closed port
    assert "failure details are unavailable" in words(message)
    assert message["lookups"] == {"unavailable": 1}
