"""Zero-config freshness end to end: a catalog that names a data product but gives it no
freshness limit; its update history alone (hourly, then silent for 3 hours) makes the collector
export a learned limit, and the generated rules in a real Prometheus fire a learned-threshold
alert through the real Alertmanager ("usually updated by ..."); a fresh update resolves it."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from impactwatch.alert_rules.settings import RuleSettings
from impactwatch.catalog.loader import load_catalog
from impactwatch.collector.intake.parse import SCHEMA
from tests.integration.helpers import catch_up, make_service, serving
from tests.integration.test_alert_rules_e2e import FAST, _stack
from tests.support.alertmanager import free_port
from tests.support.webhook_receiver import WebhookReceiver, firing, resolved

pytestmark = pytest.mark.integration

TOKEN = "e2e-learned-token"
WEBHOOK_TOKEN = "e2e-webhook-token"
URI = "s3://impactwatch-e2e/risk/learned_scores"
CATALOG = f"""
teams:
  risk:
    slack_channel: "#risk-alerts"
datasets:
  learned_scores:
    title: Learned scores
    team: risk
    produced_by: {URI}
"""


def _post(base: str, stamps: list[float]) -> None:
    events = [{"type": "asset", "uri": URI, "timestamp": at} for at in stamps]
    request = urllib.request.Request(
        f"{base}/v1/events",
        data=json.dumps({"schema": SCHEMA, "events": events}).encode(),
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
    path = tmp_path / "catalog.yaml"
    path.write_text(CATALOG)
    service = make_service(airflow_sqlite_url, tmp_path, catalog=load_catalog(path))
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


def test_an_empty_limit_learns_from_history_and_alerts(
    collector: str, receiver: WebhookReceiver, tmp_path: Path
) -> None:
    token_file = tmp_path / "webhook-token"
    token_file.write_text(WEBHOOK_TOKEN)
    am_port = free_port()
    settings = RuleSettings(
        router_url=receiver.url,
        router_token_file=str(token_file),
        collector_targets=[collector],
        alertmanager_targets=[f"127.0.0.1:{am_port}"],
        router_targets=[f"127.0.0.1:{free_port()}"],
        **FAST,
    )
    path = tmp_path / "catalog.yaml"
    am, prometheus = _stack(tmp_path / "generated", settings, load_catalog(path), am_port)
    try:
        now = time.time()
        _post(f"http://{collector}", [now - 3 * 3600 - h * 3600 for h in range(12)])
        stale = firing("DataProductStale", dataset="learned_scores")
        got = receiver.wait_for(stale, timeout=30)
        assert got is not None, f"no webhook; Prometheus alerts: {prometheus.active_alerts()}"
        alert = got.body["alerts"][0]
        assert alert["labels"]["source"] == "learned"
        assert alert["labels"]["severity"] == "critical"  # 3h stale: past twice 1h 15m
        summary = alert["annotations"]["summary"]
        assert summary.startswith("Learned scores are 3h stale: usually updated by ")
        by = time.strftime("%H:%M", time.gmtime(now - 2 * 3600))
        assert summary.endswith(f"{by} UTC"), summary
        sla = prometheus.value(
            'impactwatch_dataset_freshness_sla_seconds{dataset="learned_scores"}'
        )
        assert sla == 3600 + 900  # hourly: the usual interval plus the least tolerance

        _post(f"http://{collector}", [time.time()])
        done = receiver.wait_for(resolved("DataProductStale", dataset="learned_scores"), 30)
        assert done is not None, "the alert did not resolve after a fresh update"
    finally:
        prometheus.stop()
        am.stop()
