"""The alert contract: alert names, kinds, severities and the labels alerts carry.

`alert_rules/` writes these into the generated rules, `dashboards/` selects on them (Prometheus's
`ALERTS` series, the SLA breach counter), and the router reads them from Alertmanager's webhooks
to route and word incidents. Each is spelled here once.
"""

from __future__ import annotations

from typing import Final, Literal

# -- severities: the ladder, lowest first ----------------------------------------------------------
# Warning on breach; critical past twice the limit, or at once for critical-tier data products and
# pipelines. A critical inhibits the warning of the same incident in Alertmanager.
Severity = Literal["warning", "critical"]
WARNING: Final = "warning"
CRITICAL: Final = "critical"
SEVERITIES: tuple[Severity, ...] = (WARNING, CRITICAL)
SEVERITY_RANK: dict[str, int] = {severity: rank for rank, severity in enumerate(SEVERITIES, 1)}

# -- kinds: what an alert is about (its `kind` label) ----------------------------------------------
Kind = Literal["freshness", "duration", "deadline", "failure", "platform", "cost", "predicted"]
FRESHNESS: Final = "freshness"
DURATION: Final = "duration"
DEADLINE: Final = "deadline"
FAILURE: Final = "failure"
PLATFORM: Final = "platform"
COST: Final = "cost"
PREDICTED: Final = "predicted"  # a breach expected from the pace of a run, before it happens
BREACH_KINDS: tuple[Kind, ...] = (FRESHNESS, DURATION, DEADLINE)
"""The SLA breaches: the `kind` values of `impactwatch_sla_breaches_total`."""

# -- alert names (one runbook each) ----------------------------------------------------------------
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
ROUTER_OUTBOX_STUCK = "ImpactwatchRouterOutboxStuck"
PIPELINE_COST_ANOMALY = "PipelineCostAnomaly"
COST_MODEL_OFF = "CostModelOff"
DATA_PRODUCT_LIKELY_LATE = "DataProductLikelyLate"

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
    ROUTER_OUTBOX_STUCK,
    PIPELINE_COST_ANOMALY,
    COST_MODEL_OFF,
    DATA_PRODUCT_LIKELY_LATE,
)

OUT_OF_BAND = (ROUTER_FAILING, ROUTER_OUTBOX_STUCK)
"""Alerts about the router's own delivery: Alertmanager sends them by a path that does not go
through the router and Slack too (alert_rules/alertmanager_config.py)."""

# -- labels ----------------------------------------------------------------------------------------
ALERTNAME = "alertname"  # set by Prometheus from the rule's name
SEVERITY = "severity"
KIND = "kind"
TEAM = "team"  # the owning team: Alertmanager routes by it
DATASET = "dataset"  # the data product the alert is about
DAG_ID = "dag_id"  # the pipeline the alert is about
COMPONENT = "component"  # platform alerts: what is broken (scheduler, pool, collector, ...)
POOL = "pool"
TASK_ID = "task_id"  # predicted misses: the task the run is at
# predicted misses: Unix times and seconds the router words ("expected 07:40, limit 07:00")
EXPECTED_AT, DUE_AT, BEHIND = "expected_at", "due_at", "behind_seconds"
SOURCE = "source"  # where the alert's threshold comes from: CATALOG, or LEARNED from history
CATALOG: Final = "catalog"
LEARNED: Final = "learned"

# -- annotations the router reads beyond summary, description and runbook_url -------------------
PRODUCERS = "producers"
"""What refreshes the data products an alert is about (and those upstream of them), as Prometheus
knows from `impactwatch_dataset_producer`: `dataset=dag_id/task_id` words separated by spaces
(task_id empty: the whole DAG). The router folds by it (docs/design-notes.md, "Producers")."""

SUBJECT_LABELS = (DATASET, DAG_ID, COMPONENT)
"""What an alert is about, most specific first: the router's incident subject (else the alert's
name), and with `team` what Alertmanager groups notifications by."""
INCIDENT_LABELS = (*SUBJECT_LABELS, POOL)
"""Labels that identify one incident: a critical inhibits the warning of the same alert with the
same values (missing counts as empty)."""
