"""What a generated rule is, before it becomes YAML: alerts, recording rules, groups.

Alert names, kinds and severities are the contract's (`impactwatch.contract.alerts`);
recording-rule names are defined here once; the generators, the runbooks and the tests import
them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from impactwatch.contract.alerts import Kind, Severity

# -- recording rules: the newest value per data product / DAG, across collector instances -----
DATASET_AGE = "impactwatch:dataset_age_seconds"
DATASET_SLA = "impactwatch:dataset_freshness_sla_seconds"
DATASET_PAUSED = "impactwatch:dataset_producer_paused"
DAG_PAUSED = "impactwatch:dag_paused"


@dataclass(frozen=True)
class Alert:
    """One alerting rule. `runbook` is the runbook's path under the runbook base URL."""

    name: str
    expr: str
    severity: Severity
    kind: Kind
    summary: str
    description: str
    runbook: str
    for_seconds: float
    labels: Mapping[str, str] = field(default_factory=dict)
    keep_firing_seconds: float = 0.0
    annotations: Mapping[str, str] = field(default_factory=dict)  # beyond the three above


@dataclass(frozen=True)
class Record:
    """One recording rule."""

    record: str
    expr: str


@dataclass(frozen=True)
class Group:
    """One rule group, written to `rules/<name>.rules.yml` with `about` as its header."""

    name: str
    about: str
    rules: tuple[Alert | Record, ...]

    @property
    def alerts(self) -> tuple[Alert, ...]:
        return tuple(r for r in self.rules if isinstance(r, Alert))


def runbook_path(alert_name: str) -> str:
    return f"{alert_name}.md"


def dataset_runbook_path(dataset: str) -> str:
    return f"data-products/{dataset}.md"
