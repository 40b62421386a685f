"""A real Alertmanager, with bearer auth, through the router to the Slack stand-in."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from impactwatch.alert_rules.alertmanager_config import INHIBIT_EQUAL
from impactwatch.catalog.model import Catalog
from impactwatch.router.http_app import create_app
from impactwatch.router.service import RouterService
from impactwatch.router.settings import RouterSettings
from impactwatch.serving import Server
from tests.support.alertmanager_router import RouterAlertmanager, am_alert, router_config
from tests.support.slack_standin import SlackStandIn
from tests.unit.test_router_producers import FED, FED_FAILED, asset_catalog, fed_catalog
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
    server = Server(create_app(service, TOKEN), "127.0.0.1", 0, settings.server_limits(), name="r")
    server.start()
    service.start()
    try:
        yield slack, service, f"http://127.0.0.1:{server.port}/alertmanager"
    finally:
        server.stop()
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


def test_alerts_silenced_or_inhibited_in_alertmanager_are_not_shown_as_firing(
    stack: tuple[SlackStandIn, RouterService, str],
) -> None:
    slack, _service, url = stack
    inhibit = {
        "source_matchers": ['severity="critical"'],
        "target_matchers": ['severity="warning"'],
        "equal": list(INHIBIT_EQUAL),  # as `impactwatch rules` writes it
    }
    am = RouterAlertmanager(
        lambda token_file: {**router_config(url, token_file), "inhibit_rules": [inhibit]}, TOKEN
    )
    try:
        started = time.time() - 600
        labels = {"team": "markets", "dataset": "market_data", "kind": "freshness"}
        stale = am_alert(
            {**labels, "alertname": "DataProductStale", "severity": "warning"}, starts=started
        )
        late = am_alert(
            {**labels, "alertname": "DataProductLate", "kind": "deadline", "severity": "warning"},
            starts=started,
        )
        critical = am_alert({**labels, "alertname": "DataProductStale", "severity": "critical"},
                            starts=started + 300)  # fmt: skip
        am.post([stale, late])

        def shown() -> str:
            found = slack.top_level("#markets-data")
            return json.dumps([found[0].text, found[0].blocks]) if found else ""

        wait_for(lambda: "`DataProductLate` (warning, deadline)" in shown())
        # A silence mutes the deadline alert; the critical fires and inhibits the warning.
        # Alertmanager's next notification lists the critical only.
        am.silence({"alertname": "DataProductLate"})
        am.post([stale, late, critical])
        muted = "silenced or inhibited in Alertmanager"
        wait_for(lambda: shown().count(muted) == 2)
        assert '"Critical: Market prices' in shown()
        assert "`DataProductStale` (critical, freshness)" in shown()
        # The critical resolves: the warning is no longer inhibited and fires again.
        over = dict(critical, endsAt=am_alert({}, ends=time.time() - 1)["endsAt"])
        am.post([stale, late, over])
        wait_for(lambda: '"Warning: Market prices' in shown())
        assert "`DataProductStale` (warning, freshness)" in shown()
        assert f"`DataProductLate` (warning, deadline, {muted})" in shown()
    finally:
        am.stop()


@pytest.fixture
def asset_stack(tmp_path: Path) -> Iterator[tuple[SlackStandIn, RouterService, str]]:
    yield from _catalog_stack(tmp_path, asset_catalog())


@pytest.fixture
def fed_stack(tmp_path: Path) -> Iterator[tuple[SlackStandIn, RouterService, str]]:
    yield from _catalog_stack(tmp_path, fed_catalog())


def _catalog_stack(
    tmp_path: Path, cat: Catalog
) -> Iterator[tuple[SlackStandIn, RouterService, str]]:
    slack = SlackStandIn()
    settings = RouterSettings(
        state_db=f"sqlite:///{tmp_path / 'router.db'}",
        slack_bot_token=slack.token,
        slack_api_url=slack.url,
        settle_seconds=1,
        channel_interval=0,
        delivery_workers=2,
    )
    service = RouterService(settings, cat)
    server = Server(create_app(service, TOKEN), "127.0.0.1", 0, settings.server_limits(), name="r")
    server.start()
    service.start()
    try:
        yield slack, service, f"http://127.0.0.1:{server.port}/alertmanager"
    finally:
        server.stop()
        service.close()
        slack.stop()


def test_stale_asset_fed_products_fold_into_their_producers_failure(
    asset_stack: tuple[SlackStandIn, RouterService, str],
) -> None:
    """The catalog names Assets only; the alerts' producers annotation (as the generated rules
    write it) says which DAG writes them: one incident, its thread told, one message per
    downstream team."""
    slack, _service, url = asset_stack
    am = RouterAlertmanager.for_router(url, TOKEN)
    try:
        started = time.time() - 600
        failed = am_alert(
            {"alertname": "CriticalPipelineFailed", "severity": "critical", "kind": "failure",
             "team": "markets", "dag_id": "fx_ingest"},
            {"summary": "Critical pipeline fx_ingest failed",
             "producers": "fx_prices=fx_ingest/publish "},
            starts=started,
        )  # fmt: skip
        am.post([failed])
        wait_for(lambda: len(slack.top_level("#markets-data")) == 1)
        stale = [
            am_alert(
                {"alertname": "DataProductStale", "severity": "warning", "kind": "freshness",
                 "team": "markets", "dataset": "fx_prices"},
                {"summary": "FX prices are stale", "producers": "fx_prices=fx_ingest/publish "},
                starts=started + 60,
            ),
            am_alert(
                {"alertname": "DataProductStale", "severity": "warning", "kind": "freshness",
                 "team": "compliance", "dataset": "fx_exposure"},
                {"summary": "FX exposure is stale",
                 "producers": "fx_exposure=fx_risk/publish_exposure fx_prices=fx_ingest/publish "},
                starts=started + 60,
            ),
        ]  # fmt: skip
        am.post([failed, *stale])
        (main,) = slack.top_level("#markets-data")
        wait_for(
            lambda: any(
                "Now also out of date: FX exposure, FX prices." in r.text
                for r in slack.replies(main.ts)
            )
        )
        wait_for(lambda: len(slack.top_level("#compliance-alerts")) == 1)
        time.sleep(2)  # anything else would have been posted by now
        assert len(slack.top_level("#markets-data")) == 1
        (affected,) = slack.top_level("#compliance-alerts")
        assert (
            affected.text
            == "Affected by an upstream problem: Pipeline `fx_ingest` — pipeline run failed"
        )
        assert len(slack.top_level()) == 2
    finally:
        am.stop()


@pytest.mark.parametrize("products_ahead", [0.0, 0.3], ids=["together", "products-first"])
def test_a_failure_and_the_products_it_feeds_sent_at_once_make_one_incident(
    fed_stack: tuple[SlackStandIn, RouterService, str], products_ahead: float
) -> None:
    """The failure and three stale products it feeds (two through Assets, one through a task
    of the failed pipeline) reach Alertmanager in the same second; it groups by data product,
    so the router gets concurrent notifications in any order. One incident, the failure's:
    one message in the owner's channel, one "affected" message in the other team's."""
    slack, service, url = fed_stack
    am = RouterAlertmanager.for_router(url, TOKEN)
    try:
        started = time.time() - 600

        def sent(payload: dict) -> dict:
            return am_alert(payload["labels"], payload["annotations"], starts=started)

        stale = [
            am_alert(
                {"alertname": "DataProductStale", "severity": "warning", "kind": "freshness",
                 "team": team, "dataset": name},
                {"summary": f"{name} is stale", "producers": words},
                starts=started,
            )
            for name, (team, words) in FED.items()
        ]  # fmt: skip
        failed = sent(FED_FAILED)
        if products_ahead:
            am.post(stale)  # their groups flush just before the failure's
            time.sleep(products_ahead)
            am.post([failed])
        else:
            am.post([failed, *stale])
        wait_for(lambda: len(slack.top_level("#compliance-alerts")) == 1)
        wait_for(lambda: len(slack.top_level("#markets-data")) == 1)
        wait_for(lambda: service.stats.alerts["new"] >= 4)
        time.sleep(3)  # anything else would have been posted by now
        (main,) = slack.top_level("#markets-data")
        assert main.text == "Critical: Pipeline `fx_ingest` — pipeline run failed"
        (affected,) = slack.top_level("#compliance-alerts")
        assert (
            affected.text
            == "Affected by an upstream problem: Pipeline `fx_ingest` — pipeline run failed"
        )
        assert len(slack.top_level()) == 2
        with service.store.read() as conn:
            view = service.store.open_view(conn)
        opened = [i for i in view.incidents.values() if i.status == "open"]
        assert [i.key for i in opened] == ["dag:fx_ingest"]
        assert len(opened[0].alerts) == 4
    finally:
        am.stop()
