"""A predicted miss end to end: a real collector on a real Airflow DB (PostgreSQL copy) with a
run in flight that is behind its usual pace, its history fed through the intake into the state
DB -> Prometheus with the generated rules -> Alertmanager (generated config) -> the router ->
the Slack stand-in. The warning "will likely be ~N late ... expected HH:MM, limit HH:MM (UTC)"
arrives before any breach; the run then recovers (its producing task ends) and the same Slack
message is updated to "caught up"."""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from impactwatch.alert_rules.settings import RuleSettings
from impactwatch.catalog.loader import load_catalog
from impactwatch.collector.intake.parse import SCHEMA
from impactwatch.router.http_app import create_app
from impactwatch.router.service import RouterService
from impactwatch.router.settings import RouterSettings
from impactwatch.serving import Server
from tests.integration.helpers import catch_up, copy_of, make_service, serving, sql
from tests.integration.test_alert_rules_e2e import FAST, _stack
from tests.support.alertmanager import free_port
from tests.support.slack_standin import Message, SlackStandIn

pytestmark = pytest.mark.integration

INTAKE_TOKEN = "e2e-predicted-intake"
ROUTER_TOKEN = "e2e-predicted-router"
MIN = 60.0
DAY = 86400.0
USUAL_ENDS = {"extract": 10 * MIN, "score": 20 * MIN, "publish": 60 * MIN}
FRESHNESS = 24 * 3600 + 15 * MIN  # due 15 min from now; the run will likely take 40


def _catalog(dag_id: str) -> str:
    return f"""
teams:
  risk:
    slack_channel: "#risk-alerts"
datasets:
  customer_risk_scores:
    title: Customer risk scores
    team: risk
    produced_by: {dag_id}.publish
    freshness: {FRESHNESS:.0f}s
"""


def _task(dag_id: str, run_id: str, task_id: str, end: float) -> dict[str, object]:
    return {
        "type": "task_try",
        "dag_id": dag_id,
        "run_id": run_id,
        "task_id": task_id,
        "map_index": -1,
        "try_number": 1,
        "state": "success",
        "start_date": end - 5 * MIN,
        "end_date": end,
        "queued_date": end - 5 * MIN - 2,
    }


def _history(dag_id: str, start: float, days: int) -> list[dict[str, object]]:
    """`days` daily runs at the live run's time of day, each task at its usual pace."""
    events: list[dict[str, object]] = []
    for day in range(days, 0, -1):
        at, run_id = start - day * DAY, f"e2e_history_{day}"
        events += [_task(dag_id, run_id, t, at + end) for t, end in USUAL_ENDS.items()]
        events.append(
            {
                "type": "dag_run",
                "dag_id": dag_id,
                "run_id": run_id,
                "state": "success",
                "run_type": "scheduled",
                "run_after": at,
                "queued_at": at - 1,
                "start_date": at,
                "end_date": at + 62 * MIN,
            }
        )
    return events


def _post(base: str, events: list[dict[str, object]]) -> None:
    request = urllib.request.Request(
        f"{base}/v1/events",
        data=json.dumps({"schema": SCHEMA, "events": events}).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {INTAKE_TOKEN}"},
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert resp.status == 202


def _wait_message(slack: SlackStandIn, found: str, timeout: float) -> Message:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for message in slack.top_level():
            if found in message.text + json.dumps(message.blocks):
                return message
        time.sleep(0.2)
    raise AssertionError(f"no Slack message with {found!r}: {slack.posts()}")


@pytest.fixture
def router(tmp_path: Path) -> Iterator[tuple[SlackStandIn, str]]:
    slack = SlackStandIn()
    settings = RouterSettings(
        state_db=f"sqlite:///{tmp_path / 'router.db'}",
        slack_bot_token=slack.token,
        slack_api_url=slack.url,
        settle_seconds=1,
        channel_interval=0,
        delivery_workers=2,
    )
    path = tmp_path / "router-catalog.yaml"
    path.write_text(_catalog("placeholder"))
    service = RouterService(settings, load_catalog(path))
    server = Server(
        create_app(service, ROUTER_TOKEN), "127.0.0.1", 0, settings.server_limits(), name="r"
    )
    server.start()
    service.start()
    try:
        yield slack, f"http://127.0.0.1:{server.port}/alertmanager"
    finally:
        server.stop()
        service.close()
        slack.stop()


def test_a_run_behind_warns_before_the_breach_and_resolves_caught_up(
    pg_base_url: str, airflow_pg_url: str, router: tuple[SlackStandIn, str], tmp_path: Path
) -> None:
    slack, router_url = router
    now = time.time()
    start = now - 60 * MIN  # extract done on time, score 40 min past its usual end
    with copy_of(pg_base_url, airflow_pg_url) as url:
        dag_id = sql(url, "SELECT dag_id FROM dag WHERE NOT is_paused ORDER BY dag_id LIMIT 1")
        dag_id = dag_id[0][0]
        sql(
            url,
            "INSERT INTO dag_run (dag_id, run_id, run_type, state, run_after, queued_at,"
            " start_date, clear_number, span_status) VALUES (%s, 'e2e_live', 'manual',"
            " 'running', to_timestamp(%s), to_timestamp(%s), to_timestamp(%s), 0,"
            " 'not_started')",
            dag_id,
            start,
            start,
            start,
        )
        path = tmp_path / "catalog.yaml"
        path.write_text(_catalog(dag_id))
        catalog = load_catalog(path)
        service = make_service(url, tmp_path, catalog=catalog)
        catch_up(service)
        loop = threading.Thread(target=service.run, daemon=True)
        token_file = tmp_path / "router-token"
        token_file.write_text(ROUTER_TOKEN)
        am_port = free_port()
        with serving(service, INTAKE_TOKEN) as base:
            loop.start()
            collector = base.removeprefix("http://")
            settings = RuleSettings(
                router_url=router_url,
                router_token_file=str(token_file),
                collector_targets=[collector],
                alertmanager_targets=[f"127.0.0.1:{am_port}"],
                router_targets=[f"127.0.0.1:{free_port()}"],
                **FAST,
            )
            am, prometheus = _stack(tmp_path / "generated", settings, catalog, am_port)
            try:
                _post(base, _history(dag_id, start, 10))
                _post(base, [_task(dag_id, "e2e_live", "extract", start + 10 * MIN)])
                warned = _wait_message(slack, "will likely be ~", timeout=40)
                text = warned.text + json.dumps(warned.blocks)
                assert "Customer risk scores will likely be ~" in text
                assert "is at `score`" in text and "behind its usual pace" in text, text
                due = start - DAY + USUAL_ENDS["publish"] + FRESHNESS
                limit = time.strftime("%H:%M", time.gmtime(due))
                assert re.search(rf"expected \d\d:\d\d, limit {limit} \(UTC\)", text), text
                assert not [m for m in slack.top_level() if "stale" in m.text.lower()]

                # The run recovers: score and publish end now, the product is updated.
                done = time.time()
                _post(
                    base,
                    [
                        _task(dag_id, "e2e_live", "score", done - 60),
                        _task(dag_id, "e2e_live", "publish", done),
                    ],
                )
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    message = next(m for m in slack.posts() if m.ts == warned.ts)
                    if "caught up" in message.text + json.dumps(message.blocks):
                        break
                    time.sleep(0.2)
                else:
                    raise AssertionError(f"not caught up: {slack.posts()}")
                assert len(slack.top_level("#risk-alerts")) == 1  # the same message, updated
            finally:
                prometheus.stop()
                am.stop()
                service.stop()
                loop.join(15)
        service.close()
