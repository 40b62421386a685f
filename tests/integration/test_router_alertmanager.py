"""A real Alertmanager, with bearer auth, through the router to the Slack stand-in."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from impactwatch.router.http_app import RouterApp, serve
from impactwatch.router.service import RouterService
from impactwatch.router.settings import RouterSettings
from tests.support.alertmanager_router import RouterAlertmanager, am_alert
from tests.support.slack_standin import SlackStandIn
from tests.unit.test_router_support import catalog

pytestmark = pytest.mark.integration
TOKEN = "am-to-router-token"


def wait_for(check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError("timed out")


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[SlackStandIn, RouterService, str]]:
    slack = SlackStandIn()
    settings = RouterSettings(
        state_db=f"sqlite:///{tmp_path / 'router.db'}",
        slack_bot_token=slack.token,
        slack_api_url=slack.url,
        settle_seconds=1,
        channel_interval=0,
        delivery_workers=2,
    )
    service = RouterService(settings, catalog())
    server, _ = serve(RouterApp(service, TOKEN, None, 1 << 20), "127.0.0.1", 0)
    service.start()
    try:
        yield slack, service, f"http://127.0.0.1:{server.server_port}/alertmanager"
    finally:
        server.shutdown()
        server.server_close()
        service.close()
        slack.stop()


def test_an_ha_pair_of_real_alertmanagers_makes_one_message_per_incident(
    stack: tuple[SlackStandIn, RouterService, str],
) -> None:
    slack, service, url = stack
    pair, wrong = [], None
    try:
        for _ in range(2):
            pair.append(RouterAlertmanager.for_router(url, TOKEN))
        wrong = RouterAlertmanager.for_router(url, "wrong-token")
        started = time.time() - 600
        firing = [
            am_alert(
                {"alertname": "DataProductStale", "severity": "warning", "kind": "freshness",
                 "team": "markets", "dataset": "market_data"},
                {"summary": "Market prices are stale", "runbook_url": "https://runbooks/x"},
                starts=started,
            ),
            am_alert(
                {"alertname": "DataProductStale", "severity": "critical", "kind": "freshness",
                 "team": "risk", "dataset": "customer_risk_scores"},
                starts=started,
            ),
            am_alert(
                {"alertname": "DataProductStale", "severity": "warning", "kind": "freshness",
                 "team": "compliance", "dataset": "regulatory_submission"},
                starts=started,
            ),
        ]  # fmt: skip
        for am in [*pair, wrong]:
            am.post(firing)
        wait_for(lambda: len(slack.top_level()) >= 3)
        time.sleep(3)  # repeats and the second Alertmanager's copies arrive meanwhile
        escalations = slack.top_level("#data-incidents")  # warning -> critical, by arrival order
        assert len(escalations) <= 1
        heads = sorted((m.channel, m.text) for m in slack.top_level() if m not in escalations)
        assert heads == sorted(
            [
                (slack.channel_id("markets-data"), "Critical: Market prices — out of date"),
                (slack.channel_id("risk-alerts"),
                 "Affected by an upstream problem: Market prices — out of date"),
                (slack.channel_id("compliance-alerts"),
                 "Affected by an upstream problem: Market prices — out of date"),
            ]
        )  # fmt: skip
        assert service.stats.notifications["unauthorized"] >= 1  # the wrong token was refused
        assert service.stats.alerts["duplicate"] >= 3  # the pair's copies changed nothing
        resolved = [dict(a, endsAt=am_alert({}, ends=time.time() - 1)["endsAt"]) for a in firing]
        for am in pair:
            am.post(resolved)
        main = next(m for m in slack.top_level() if m.channel == slack.channel_id("markets-data"))
        wait_for(lambda: any("Resolved after" in r.text for r in slack.replies(main.ts)))
        wait_for(lambda: main.text.startswith("Resolved: Market prices"))
        assert len(slack.top_level()) == 3 + len(escalations)
    finally:
        for am in [*pair, *([wrong] if wrong else [])]:
            am.stop()
