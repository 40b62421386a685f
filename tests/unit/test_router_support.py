"""Shared builders for the router's tests: a small catalog, Alertmanager alerts, a clock.

(A module of helpers, not tests: pytest collects nothing from it.)
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from impactwatch.catalog.model import Catalog
from impactwatch.router.payload import Notification, fingerprint_of, parse_notification

T0 = 1_795_500_000.0  # 2026-11-24 ~06:00 UTC

CATALOG: dict[str, Any] = {
    "teams": {
        "markets": {
            "slack_channel": "#markets-data",
            "escalation": [
                {"after": "15m", "channel": "#data-incidents", "mention": "S0MARKETS"},
                {"after": "1h", "mention": "@data-platform-oncall"},
            ],
        },
        "risk": {
            "slack_channel": "#risk-alerts",
            "escalation": [{"after": "15m", "channel": "#data-incidents", "mention": "U0RISK"}],
        },
        "compliance": {"slack_channel": "#compliance-alerts"},
        "reporting": {"slack_channel": "#reporting", "digest": True},
        "platform": {"slack_channel": "#data-platform"},
    },
    "datasets": {
        "market_data": {
            "title": "Market prices",
            "team": "markets",
            "tier": "critical",
            "produced_by": "market_data_ingest.publish",
            "freshness": "2h",
            "description": "Prices from the exchanges.",
        },
        "customer_risk_scores": {
            "title": "Customer risk scores",
            "team": "risk",
            "tier": "critical",
            "produced_by": "risk_scoring.publish_scores",
            "freshness": "90m",
            "upstream": ["market_data"],
        },
        "regulatory_submission": {
            "title": "Regulatory submission",
            "team": "compliance",
            "produced_by": "regulatory_submission",
            "freshness": "26h",
            "upstream": ["customer_risk_scores"],
        },
        "daily_kpi_report": {
            "title": "Daily KPI report",
            "team": "reporting",
            "produced_by": "morning_reporting.extract_kpis",
            "freshness": "26h",
        },
    },
    "pipelines": {
        "market_data_ingest": {"team": "markets", "max_duration": "15m"},
        "risk_scoring": {"team": "risk", "max_duration": "20m"},
        "regulatory_submission": {"team": "compliance", "deadline": "07:00 Europe/London"},
    },
    "defaults": {"team": "platform"},
}


def catalog() -> Catalog:
    return Catalog.model_validate(CATALOG)


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"


def alert(
    name: str = "DataProductStale",
    status: str = "firing",
    severity: str = "warning",
    kind: str = "freshness",
    starts: float = T0 - 600,
    annotations: dict[str, str] | None = None,
    **labels: str,
) -> dict[str, Any]:
    all_labels = {"alertname": name, "severity": severity, "kind": kind, **labels}
    fingerprint = fingerprint_of(all_labels)
    return {
        "status": status,
        "labels": all_labels,
        "annotations": annotations
        or {
            "summary": f"{name} for {labels.get('dataset') or labels.get('dag_id', '')}",
            "runbook_url": "https://runbooks.example/" + name,
        },
        "startsAt": iso(starts),
        "endsAt": iso(starts + 3600) if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph?g0.expr=x",
        "fingerprint": fingerprint,
    }


_groups = itertools.count()


def body(alerts: Iterable[dict[str, Any]], **extra: Any) -> bytes:
    items = list(alerts)
    status = "firing" if any(a["status"] == "firing" for a in items) else "resolved"
    return json.dumps(
        {
            "version": "4",
            "groupKey": f"{{}}:{{group={next(_groups)}}}",
            "truncatedAlerts": 0,
            "status": status,
            "receiver": "impactwatch-router",
            "groupLabels": {},
            "commonLabels": {},
            "commonAnnotations": {},
            "externalURL": "http://alertmanager:9093",
            "alerts": items,
            **extra,
        }
    ).encode()


def notification(*alerts: dict[str, Any], now: float = T0) -> Notification:
    return parse_notification(body(alerts), now)


def texts(value: Any) -> list[str]:
    """Every string in a Block Kit structure (and the fallback text)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in texts(v)]
    if isinstance(value, list | tuple):
        return [t for v in value for t in texts(v)]
    return []
