"""The generated rules and configs end to end, with the real binaries: a real collector (on a
real Airflow DB) -> Prometheus (generated prometheus.yml and rules) -> Alertmanager (generated
alertmanager.yml) -> a webhook receiver standing in for the router.

Staleness is made fast with a test catalog (a 5-second freshness limit) and test-only timing
settings (1s scrape, evaluation, for: and group_wait); the shipped timing is measured by
bench/bench_alert_latency.py.
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from impactwatch.alert_rules.generate import generate
from impactwatch.alert_rules.settings import RuleSettings
from impactwatch.alert_rules.writer import write_tree
from impactwatch.catalog.loader import load_catalog
from impactwatch.catalog.model import Catalog
from impactwatch.collector.intake.parse import SCHEMA
from tests.integration.helpers import catch_up, make_service, serving
from tests.support.alertmanager import Alertmanager, ConfiguredPrometheus, free_port
from tests.support.webhook_receiver import Notification, WebhookReceiver, firing, resolved

pytestmark = pytest.mark.integration

TOKEN = "e2e-webhook-token"
SCORES_URI = "s3://impactwatch-e2e/risk/customer_scores"
CATALOG = f"""
teams:
  risk:
    slack_channel: "#risk-alerts"
  platform:
    slack_channel: "#data-platform"
datasets:
  customer_risk_scores:
    title: Customer risk scores
    team: risk
    tier: critical
    produced_by: {SCORES_URI}
    freshness: 5s
    description: Credit and market risk score for every customer.
"""
FAST = {
    "scrape_interval": 1.0,
    "evaluation_interval": 1.0,
    "freshness_for": 1.0,
    "group_wait": 1.0,
    "group_interval": 1.0,
}


TOKEN = "e2e-intake-token"


def _catalog(folder: Path) -> Catalog:
    path = folder / "catalog.yaml"
    path.write_text(CATALOG)
    return load_catalog(path)


def _post_asset_event(base: str, at: float) -> None:
    body = {"schema": SCHEMA, "events": [{"type": "asset", "uri": SCORES_URI, "timestamp": at}]}
    request = urllib.request.Request(
        f"{base}/v1/events",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"},
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert resp.status == 202


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def collector(airflow_sqlite_url: str, tmp_path: Path) -> Iterator[str]:
    """A real collector on the populated Airflow DB with the test catalog, polling; its URL."""
    service = make_service(airflow_sqlite_url, tmp_path, catalog=_catalog(tmp_path))
    catch_up(service)
    loop = threading.Thread(target=service.run, daemon=True)
    with serving(service, TOKEN) as base:
        loop.start()
        try:
            yield base.removeprefix("http://")
        finally:
            service.stop()
            loop.join(15)
    service.close()


def _stack(folder: Path, settings: RuleSettings, catalog: Catalog, am_port: int):
    write_tree(folder, generate(catalog, settings))
    am = Alertmanager(folder / "alertmanager.yml", port=am_port)
    try:
        return am, ConfiguredPrometheus(folder / "prometheus.yml")
    except BaseException:
        am.stop()
        raise


def test_stale_product_reaches_the_router_and_resolves_when_fresh(
    collector: str, receiver: WebhookReceiver, tmp_path: Path
) -> None:
    token_file = tmp_path / "webhook-token"
    token_file.write_text(TOKEN)
    am_port = free_port()
    settings = RuleSettings(
        router_url=receiver.url,
        router_token_file=str(token_file),
        collector_targets=[collector],
        alertmanager_targets=[f"127.0.0.1:{am_port}"],
        router_targets=[f"127.0.0.1:{free_port()}"],  # nothing listens: the router is not built
        **FAST,
    )
    am, prometheus = _stack(tmp_path / "generated", settings, _catalog(tmp_path), am_port)
    try:
        # Prometheus scrapes the collector before the product's clock starts.
        deadline = time.monotonic() + 20
        while prometheus.value(f'up{{job="{settings.collector_job}"}}') != 1:
            assert time.monotonic() < deadline, "Prometheus never scraped the collector"
            time.sleep(0.2)
        updated = time.time()
        _post_asset_event(f"http://{collector}", updated)
        stale = firing("DataProductStale", dataset="customer_risk_scores")
        got = receiver.wait_for(stale, timeout=30)
        assert got is not None, f"no webhook; Prometheus alerts: {prometheus.active_alerts()}"
        # Never before the limit; then within scrape + evaluation + for: + group_wait (+ slack).
        assert updated + 5 < got.received_at < updated + 5 + 4 + 4
        _assert_notification(got, settings)

        _post_asset_event(f"http://{collector}", time.time())  # fresh again
        done = receiver.wait_for(resolved("DataProductStale", dataset="customer_risk_scores"), 20)
        assert done is not None, "the alert did not resolve after a fresh update"
        assert done.body["status"] == "resolved"
    finally:
        prometheus.stop()
        am.stop()


def _assert_notification(got: Notification, settings: RuleSettings) -> None:
    assert got.headers["Authorization"] == f"Bearer {TOKEN}"
    body = got.body
    assert body["version"] == "4" and body["receiver"] == "impactwatch-router"
    assert body["status"] == "firing"
    assert body["groupLabels"] == {"team": "risk", "dataset": "customer_risk_scores"}
    (alert,) = [a for a in got.alerts if a["labels"]["dataset"] == "customer_risk_scores"]
    assert alert["labels"] == {
        "alertname": "DataProductStale",
        "dataset": "customer_risk_scores",
        "team": "risk",
        "tier": "critical",
        "severity": "critical",
        "kind": "freshness",
    }
    notes = alert["annotations"]
    assert re.fullmatch(
        r"Customer risk scores are \d+(\.\d+)?s stale \(limit 5s\)", notes["summary"]
    ), notes["summary"]
    assert notes["description"] == (
        "Owned by risk, critical tier; must be refreshed at least every 5s. Updated by events "
        f"of the Airflow Asset {SCORES_URI}. Credit and market risk score for every customer. "
        "Critical-tier data product: critical from the start."
    )
    assert notes["runbook_url"] == (
        f"{settings.runbook_base_url}/data-products/customer_risk_scores.md"
    )


def test_alertmanager_inhibits_the_warning_of_the_same_incident(
    receiver: WebhookReceiver, tmp_path: Path
) -> None:
    """Alerts posted as Prometheus posts them: the critical hides the warning of the same
    product; a warning of another product still arrives; routing groups by team and product."""
    token_file = tmp_path / "webhook-token"
    token_file.write_text(TOKEN)
    settings = RuleSettings(router_url=receiver.url, router_token_file=str(token_file), **FAST)
    catalog = _catalog(tmp_path)
    write_tree(tmp_path / "generated", generate(catalog, settings))
    am = Alertmanager(tmp_path / "generated" / "alertmanager.yml")
    try:

        def alert(dataset: str, severity: str) -> dict:
            labels = {"alertname": "DataProductStale", "dataset": dataset, "team": "risk"}
            labels |= {"severity": severity, "kind": "freshness", "tier": "high"}
            return {"labels": labels, "annotations": {"summary": f"{dataset} {severity}"}}

        am.post_alerts(
            [
                alert("fx_rates", "warning"),
                alert("fx_rates", "critical"),
                alert("ledger_balances", "warning"),
            ]
        )
        fx = receiver.wait_for(firing("DataProductStale", dataset="fx_rates"), 15)
        ledger = receiver.wait_for(firing("DataProductStale", dataset="ledger_balances"), 15)
        assert fx is not None and ledger is not None
        assert [a["labels"]["severity"] for a in fx.alerts] == ["critical"]
        assert [a["labels"]["severity"] for a in ledger.alerts] == ["warning"]
        assert fx.body["groupLabels"] == {"team": "risk", "dataset": "fx_rates"}
        time.sleep(2.5)  # two more group intervals: the warning never follows
        sent = [a["labels"] for n in receiver.notifications for a in n.alerts]
        assert not [s for s in sent if s["dataset"] == "fx_rates" and s["severity"] == "warning"]
    finally:
        am.stop()
