"""The demo's stack for real: collector, router, Prometheus and Alertmanager as `impactwatch
demo` starts them, wired by the generated configs, an alert through to a rendered message."""

from __future__ import annotations

import json
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from impactwatch.demo.processes import Processes
from impactwatch.demo.stack import Stack
from impactwatch.demo.watch import MessageLog, fetch_alerts


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.load(resp)


def _eventually(check, timeout: float = 30):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.5)


def test_the_demo_stack_scrapes_alerts_and_renders(tmp_path: Path, airflow_sqlite_url: str) -> None:
    processes = Processes(tmp_path / "logs")
    stack = Stack(tmp_path, processes, airflow_ui=False)
    try:
        stack.write_catalog()
        config_dir = stack.write_rules()
        stack.start_collector(airflow_sqlite_url)
        stack.start_router()
        stack.start_alertmanager(config_dir)
        stack.start_prometheus(config_dir)

        def targets_up() -> set[str]:
            active = _get(f"{stack.url('prometheus')}/api/v1/targets")["data"]["activeTargets"]
            return {t["labels"]["job"] for t in active if t["health"] == "up"}

        assert _eventually(lambda: targets_up() >= {"impactwatch-collector", "impactwatch-router"})
        rules = _get(f"{stack.url('prometheus')}/api/v1/rules")["data"]["groups"]
        assert {g["name"] for g in rules} >= {"impactwatch-freshness", "impactwatch-pipelines"}

        # an alert as Prometheus sends it -> Alertmanager -> the router (bearer token) -> JSONL
        alert = {
            "labels": {
                "alertname": "DataProductStale",
                "dataset": "market_data",
                "team": "markets",
                "severity": "warning",
                "kind": "freshness",
            },
            "annotations": {"summary": "Market prices are 2m stale (limit 1m)"},
            "startsAt": datetime.now(UTC).isoformat(),
        }
        request = urllib.request.Request(
            f"{stack.url('alertmanager')}/api/v2/alerts",
            data=json.dumps([alert]).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        urllib.request.urlopen(request, timeout=5).close()
        assert _eventually(lambda: fetch_alerts(stack.url("alertmanager")))
        messages = MessageLog(stack.messages_path)
        posted = _eventually(lambda: messages.new(), timeout=40)
        assert posted, (tmp_path / "logs" / "router.log").read_text()[-2000:]
        assert posted[0]["channel"] == "#markets-data"
        assert "Market prices" in posted[0]["text"]
    finally:
        children = list(processes.children)
        processes.stop()
    assert children and all(not c.alive() for c in children)
