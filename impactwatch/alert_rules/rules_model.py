"""What a generated rule is, before it becomes YAML: alerts, recording rules, groups, names.

Alert names, `kind` values and recording-rule names are defined here once; the generators,
the runbooks and the tests import them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Severity = Literal["warning", "critical"]
Kind = Literal["freshness", "duration", "deadline", "failure", "platform", "cost"]

# -- alert names (one runbook each) -----------------------------------------------------------
DATA_PRODUCT_STALE = "DataProductStale"
PIPELINE_RUN_TOO_LONG = "PipelineRunTooLong"
PIPELINE_MISSED_DEADLINE = "PipelineMissedDeadline"
CRITICAL_PIPELINE_FAILED = "CriticalPipelineFailed"
SCHEDULER_DOWN = "AirflowSchedulerDown"
SCHEDULER_LAGGING = "AirflowSchedulerLagging"
POOL_STARVING = "AirflowPoolStarving"
XCOM_BLOAT = "AirflowXComBloat"
DAG_IMPORT_ERRORS = "AirflowDagImportErrors"
COLLECTOR_DOWN = "ImpactwatchCollectorDown"
COLLECTOR_STALE = "ImpactwatchCollectorStale"
ROUTER_FAILING = "ImpactwatchRouterFailing"
PIPELINE_COST_ANOMALY = "PipelineCostAnomaly"
COST_MODEL_OFF = "CostModelOff"

ALERT_NAMES = (
    DATA_PRODUCT_STALE,
    PIPELINE_RUN_TOO_LONG,
    PIPELINE_MISSED_DEADLINE,
    CRITICAL_PIPELINE_FAILED,
    SCHEDULER_DOWN,
    SCHEDULER_LAGGING,
    POOL_STARVING,
    XCOM_BLOAT,
    DAG_IMPORT_ERRORS,
    COLLECTOR_DOWN,
    COLLECTOR_STALE,
    ROUTER_FAILING,
    PIPELINE_COST_ANOMALY,
    COST_MODEL_OFF,
)

# -- recording rules: the newest value per data product / DAG, across collector instances -----
DATASET_AGE = "impactwatch:dataset_age_seconds"
DATASET_SLA = "impactwatch:dataset_freshness_sla_seconds"
DATASET_PAUSED = "impactwatch:dataset_producer_paused"
DAG_PAUSED = "impactwatch:dag_paused"

# Labels that identify one incident: Alertmanager groups by them (with `team`) and a critical
# inhibits the warning of the same alert with the same values (missing counts as empty).
INCIDENT_LABELS = ("dataset", "dag_id", "component", "pool")


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
