"""The metric contract: every metric impactwatch exports, its type, labels and help.

The collector, the router, `alert_rules/` and `dashboards/` import names from here and never
spell them twice. Conventions: base units, `_total` for counters, `_timestamp_seconds` for
points in time, prefix `impactwatch_`; labels bounded by the catalog and the DAG list.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Kind = Literal["gauge", "counter", "histogram"]

_NAME = re.compile(r"^impactwatch_[a-z][a-z0-9_]*$")
_FORBIDDEN_LABELS = frozenset({"run_id", "try_number", "hostname", "host", "message", "error"})


@dataclass(frozen=True)
class MetricSpec:
    """One exported metric family; `name` is what PromQL uses (counters end in `_total`)."""

    name: str
    kind: Kind
    labels: tuple[str, ...]
    help: str
    buckets: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"metric name {self.name!r} must match {_NAME.pattern}")
        if (self.kind == "counter") != self.name.endswith("_total"):
            raise ValueError(f"{self.name}: counters, and only counters, end in _total")
        if self.kind == "histogram" and not self.buckets:
            raise ValueError(f"{self.name}: a histogram needs buckets")
        if bad := _FORBIDDEN_LABELS.intersection(self.labels):
            raise ValueError(f"{self.name}: unbounded label(s) {sorted(bad)}")

    @property
    def family(self) -> str:
        """The family name prometheus-client wants (counters without `_total`)."""
        return self.name.removesuffix("_total") if self.kind == "counter" else self.name

    def series(self, suffix: str) -> str:
        """A histogram's sample name: `series("count")` -> `<name>_count`."""
        return f"{self.name}_{suffix}"


DURATION_BUCKETS = (30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0, 14400.0)
DELAY_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
COST_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 50.0, 100.0, 500.0)
POLL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)

DS = ("dataset", "team", "tier")
DAG = ("dag_id", "team")

# --- business metrics -------------------------------------------------------------------------
DATASET_LAST_UPDATED = MetricSpec(
    "impactwatch_dataset_last_updated_timestamp_seconds",
    "gauge",
    DS,
    "Last successful update of the data product (Unix time).",
)
THRESHOLD_SOURCES = ("catalog", "learned")  # a threshold's `source` label
DATASET_FRESHNESS_SLA = MetricSpec(
    "impactwatch_dataset_freshness_sla_seconds",
    "gauge",
    (*DS, "source"),
    "Maximum allowed age of the data product before it counts as stale; source: catalog, or "
    "learned from its usual update times.",
)
DATASET_USUAL_UPDATE_BY = MetricSpec(
    "impactwatch_dataset_usual_update_by_timestamp_seconds",
    "gauge",
    DS,
    "When the update after the last one usually comes by, learned from history (Unix time).",
)
DATASET_BASELINE_UPDATES = MetricSpec(
    "impactwatch_dataset_baseline_updates",
    "gauge",
    DS,
    "Updates the data product's learned cadence is made of (none learned below 8).",
)
DATASET_PRODUCER_PAUSED = MetricSpec(
    "impactwatch_dataset_producer_paused",
    "gauge",
    DS,
    "1 when the DAG producing the data product is paused (freshness alerts hold off).",
)
DATASET_PRODUCER = MetricSpec(
    "impactwatch_dataset_producer",
    "gauge",
    ("dataset", "dag_id", "task_id"),
    "1 for each DAG and task that refreshes the data product (task_id empty: every successful "
    "run): the catalog's produced_by, or an Asset's declared writers and its events' sources. "
    'Alert annotations carry it to the router (docs/design-notes.md, "Producers").',
)
DAG_RUN_DURATION = MetricSpec(
    "impactwatch_dag_run_duration_seconds",
    "histogram",
    (*DAG, "state"),
    "Durations of finished DAG runs, by final state.",
    DURATION_BUCKETS,
)
DAG_RUN_OLDEST_RUNNING = MetricSpec(
    "impactwatch_dag_run_oldest_running_seconds",
    "gauge",
    DAG,
    "Age of the oldest DAG run still running (duration SLA in flight).",
)
DAG_RUN_MAX_DURATION = MetricSpec(
    "impactwatch_dag_run_max_duration_seconds",
    "gauge",
    (*DAG, "source"),
    "Duration SLA of the pipeline: a run longer than this breaches; source: catalog, or "
    "learned from its usual durations (only while a run is in flight: for the oldest one).",
)
DAG_RUN_USUAL_DURATION = MetricSpec(
    "impactwatch_dag_run_usual_duration_seconds",
    "gauge",
    (*DAG, "quantile"),
    "Learned duration of successful runs (quantile 0.5 or 0.9) for the seasonal bucket of the "
    "oldest run in flight (only while one is).",
)
DAG_BASELINE_RUNS = MetricSpec(
    "impactwatch_dag_baseline_runs",
    "gauge",
    DAG,
    "Successful runs the DAG's learned durations are made of (none learned below 5).",
)
DATASET_EXPECTED_UPDATE = MetricSpec(
    "impactwatch_dataset_expected_update_timestamp_seconds",
    "gauge",
    (*DS, "dag_id", "task_id"),
    "When the data product's next update will likely come, from the pace of the run that "
    "makes it (in flight, or late to start: task_id empty) and learned task times (Unix time).",
)
DATASET_UPDATE_DUE = MetricSpec(
    "impactwatch_dataset_update_due_timestamp_seconds",
    "gauge",
    DS,
    "When the data product turns late (last update plus its limit, catalog or learned), for "
    "products with an expected update (Unix time).",
)
DAG_RUN_BEHIND = MetricSpec(
    "impactwatch_dag_run_behind_seconds",
    "gauge",
    (*DAG, "task_id"),
    "How far the DAG's oldest run in flight (or a run late to start: task_id empty) is behind "
    "its usual pace, at task_id, the first task not finished (negative: ahead).",
)
DAG_RUN_EXPECTED_END = MetricSpec(
    "impactwatch_dag_run_expected_end_timestamp_seconds",
    "gauge",
    DAG,
    "When the DAG's oldest run in flight (or a run late to start) will likely end, at its "
    "usual pace from where it is (Unix time).",
)
DAG_RUN_LAST_SUCCESS = MetricSpec(
    "impactwatch_dag_run_last_success_timestamp_seconds",
    "gauge",
    DAG,
    "End of the last successful DAG run (Unix time).",
)
DAG_RUN_LAST_FAILURE = MetricSpec(
    "impactwatch_dag_run_last_failure_timestamp_seconds",
    "gauge",
    DAG,
    "End of the last failed DAG run (Unix time).",
)
DAG_RUN_DEADLINE = MetricSpec(
    "impactwatch_dag_run_deadline_timestamp_seconds",
    "gauge",
    DAG,
    "The next deadline not yet met by a successful run (Unix time); in the past means missed.",
)
DAG_PAUSED = MetricSpec(
    "impactwatch_dag_paused",
    "gauge",
    DAG,
    "1 when the DAG is paused in Airflow.",
)
DAG_RUN_SCHEDULE_DELAY = MetricSpec(
    "impactwatch_dag_run_schedule_delay_seconds",
    "histogram",
    DAG,
    "Start of a scheduled run minus when it was due (scheduler lag).",
    DELAY_BUCKETS,
)
TASK_QUEUED = MetricSpec(
    "impactwatch_task_queued_seconds",
    "histogram",
    (*DAG, "pool"),
    "Task start minus the time it was queued.",
    DELAY_BUCKETS,
)
DAG_RUN_COST = MetricSpec(
    "impactwatch_dag_run_cost_dollars",
    "histogram",
    DAG,
    "Cost of each finished DAG run (sum of its task tries); the sum is the spend.",
    COST_BUCKETS,
)
DAG_RUN_LAST_COST = MetricSpec(
    "impactwatch_dag_run_last_cost_dollars",
    "gauge",
    DAG,
    "Cost of the DAG's latest finished run.",
)
DAG_RUN_MEDIAN_COST = MetricSpec(
    "impactwatch_dag_run_median_cost_dollars",
    "gauge",
    DAG,
    "Median cost of the DAG's 20 finished runs before the latest (from 5 such runs on).",
)
TASK_COST = MetricSpec(
    "impactwatch_task_cost_dollars_total",
    "counter",
    (*DAG, "task_id"),
    "Cost of the task's tries (retries and mapped instances included) in finished runs; "
    "task_id is a task the catalog names or one of the DAG's most expensive, else (other).",
)
SLA_BREACHES = MetricSpec(
    "impactwatch_sla_breaches_total",
    "counter",
    ("team", "severity", "kind", "dag_id", "dataset"),
    "SLA breaches by kind (freshness, duration, deadline), counted once per severity reached.",
)
POOL_SLOTS = MetricSpec(
    "impactwatch_pool_slots",
    "gauge",
    ("pool", "state"),
    "Airflow pool slots by state: total, running, queued, open.",
)
XCOM_LARGEST = MetricSpec(
    "impactwatch_xcom_largest_bytes",
    "gauge",
    DAG,
    "Largest XCom value written by the DAG's runs in the last 24 hours.",
)
DAG_IMPORT_ERRORS = MetricSpec(
    "impactwatch_dag_import_errors",
    "gauge",
    (),
    "DAG files failing to parse.",
)
SCHEDULER_HEARTBEAT = MetricSpec(
    "impactwatch_scheduler_last_heartbeat_timestamp_seconds",
    "gauge",
    (),
    "Latest heartbeat of any Airflow scheduler (Unix time).",
)

# --- collector self-metrics -------------------------------------------------------------------
COLLECTOR_POLL_DURATION = MetricSpec(
    "impactwatch_collector_poll_duration_seconds",
    "histogram",
    (),
    "Wall time of one metadata-DB poll cycle.",
    POLL_BUCKETS,
)
COLLECTOR_ROWS_READ = MetricSpec(
    "impactwatch_collector_rows_read_total",
    "counter",
    ("table",),
    "Rows read from the Airflow metadata DB, by table.",
)
# Outcomes of `impactwatch_collector_events_total`: what became of each event stored, and
# (source listener) why an intake request was refused or failed, one count per request.
EVENT_OUTCOMES = ("new", "updated", "duplicate", "unknown_dag")
INTAKE_REFUSALS = (
    "unauthorized",  # 401: missing or wrong token
    "invalid",  # 400 (the body, or a value in it) and 411 (no Content-Length)
    "too_large",  # 413
    "queue_full",  # 503: the writer has `intake_queue` requests waiting
    "store_error",  # 503: the state DB failed or did not answer within the write timeout
    "store_refused",  # 400: the state DB refused a value of the batch (retrying cannot help)
    "disconnected",  # the client went away, or was cut off, before its body was read
)
COLLECTOR_EVENTS = MetricSpec(
    "impactwatch_collector_events_total",
    "counter",
    ("source", "outcome"),
    "Events by source (poller, listener) and outcome (new, updated, duplicate, unknown_dag: "
    "stored but kept out of the metrics until Airflow knows the DAG); refused intake requests "
    "count once each by reason (unauthorized, invalid, too_large, queue_full, store_error, "
    "store_refused, disconnected).",
)
COLLECTOR_LAST_POLL = MetricSpec(
    "impactwatch_collector_last_successful_poll_timestamp_seconds",
    "gauge",
    (),
    "End of the last poll cycle that completed (Unix time).",
)
COLLECTOR_DB_ERRORS = MetricSpec(
    "impactwatch_collector_db_errors_total",
    "counter",
    ("db",),
    "Database errors by database (airflow, state).",
)
COLLECTOR_STALE = MetricSpec(
    "impactwatch_collector_stale",
    "gauge",
    (),
    "1 while the collector cannot read the Airflow metadata DB and serves its last state.",
)

BUSINESS_METRICS: tuple[MetricSpec, ...] = (
    DATASET_LAST_UPDATED,
    DATASET_FRESHNESS_SLA,
    DATASET_PRODUCER_PAUSED,
    DATASET_PRODUCER,
    DATASET_USUAL_UPDATE_BY,
    DATASET_BASELINE_UPDATES,
    DAG_RUN_DURATION,
    DAG_RUN_OLDEST_RUNNING,
    DAG_RUN_MAX_DURATION,
    DAG_RUN_USUAL_DURATION,
    DAG_BASELINE_RUNS,
    DATASET_EXPECTED_UPDATE,
    DATASET_UPDATE_DUE,
    DAG_RUN_BEHIND,
    DAG_RUN_EXPECTED_END,
    DAG_RUN_LAST_SUCCESS,
    DAG_RUN_LAST_FAILURE,
    DAG_RUN_DEADLINE,
    DAG_PAUSED,
    DAG_RUN_SCHEDULE_DELAY,
    TASK_QUEUED,
    DAG_RUN_COST,
    DAG_RUN_LAST_COST,
    DAG_RUN_MEDIAN_COST,
    TASK_COST,
    SLA_BREACHES,
    POOL_SLOTS,
    XCOM_LARGEST,
    DAG_IMPORT_ERRORS,
    SCHEDULER_HEARTBEAT,
)
COLLECTOR_METRICS: tuple[MetricSpec, ...] = (
    COLLECTOR_POLL_DURATION,
    COLLECTOR_ROWS_READ,
    COLLECTOR_EVENTS,
    COLLECTOR_LAST_POLL,
    COLLECTOR_DB_ERRORS,
    COLLECTOR_STALE,
)
ALL_METRICS: tuple[MetricSpec, ...] = BUSINESS_METRICS + COLLECTOR_METRICS

# --- cost reconciliation (`impactwatch cost reconcile`, its own process) -------------------
# Actual cost from AWS Cost Explorer beside the collector's estimate. Not part of ALL_METRICS:
# the collector does not export them.
COST_ACTUAL_DAILY = MetricSpec(
    "impactwatch_cost_actual_daily_dollars",
    "gauge",
    DAG,
    "Actual cost per day of the DAG's resources (AWS Cost Explorer, grouped by the cost "
    "allocation tag), averaged over the reconciled days.",
)
COST_ESTIMATED_DAILY = MetricSpec(
    "impactwatch_cost_estimated_daily_dollars",
    "gauge",
    DAG,
    "impactwatch's estimate of the DAG's cost per day over the same days.",
)
COST_MODEL_RATIO = MetricSpec(
    "impactwatch_cost_model_ratio",
    "gauge",
    DAG,
    "Actual cost over estimated cost of the DAG (1 = the model matches the bill).",
)
COST_UNATTRIBUTED_DAILY = MetricSpec(
    "impactwatch_cost_unattributed_daily_dollars",
    "gauge",
    (),
    "Cost per day with no tag, or a tag naming no known DAG, averaged over the reconciled days.",
)
COST_RECONCILE_DAY = MetricSpec(
    "impactwatch_cost_reconcile_day_timestamp_seconds",
    "gauge",
    (),
    "Start (UTC midnight) of the last day the exported actual and estimated costs cover.",
)
COST_RECONCILE_LAST_SUCCESS = MetricSpec(
    "impactwatch_cost_reconcile_last_success_timestamp_seconds",
    "gauge",
    (),
    "When the last reconciliation with AWS Cost Explorer succeeded (Unix time).",
)
COST_RECONCILE_ERRORS = MetricSpec(
    "impactwatch_cost_reconcile_errors_total",
    "counter",
    ("reason",),
    "Failed reconciliations by reason (throttled, access_denied, unavailable, invalid, "
    "state_db, other).",
)
COST_RECONCILE_METRICS: tuple[MetricSpec, ...] = (
    COST_ACTUAL_DAILY,
    COST_ESTIMATED_DAILY,
    COST_MODEL_RATIO,
    COST_UNATTRIBUTED_DAILY,
    COST_RECONCILE_DAY,
    COST_RECONCILE_LAST_SUCCESS,
    COST_RECONCILE_ERRORS,
)
RECONCILE_ERROR_REASONS = (
    "throttled",
    "access_denied",
    "unavailable",
    "invalid",
    "state_db",
    "other",
)

# --- pool advice (`impactwatch pools advise --listen`, its own process) --------------------------
# The advised pool sizes and their expected effect, computed from the collector's state DB. Not
# part of ALL_METRICS: the collector does not export them.
POOL_ADVISED_SLOTS = MetricSpec(
    "impactwatch_pool_advised_slots",
    "gauge",
    ("pool",),
    "Slots the pool advice gives the pool for the current time window.",
)
POOL_ADVICE_WAIT_SAVED = MetricSpec(
    "impactwatch_pool_advice_wait_saved_seconds",
    "gauge",
    ("pool",),
    "Queue wait per week of SLA-bearing pipelines' tasks the advice saves against the static "
    "size (history replayed under both).",
)
POOL_ADVICE_SLOT_HOURS_FREED = MetricSpec(
    "impactwatch_pool_advice_slot_hours_freed",
    "gauge",
    ("pool",),
    "Slot hours per week the advice frees against the static size (negative: it adds them).",
)
POOL_ADVICE_COST_DIFFERENCE = MetricSpec(
    "impactwatch_pool_advice_cost_difference_dollars",
    "gauge",
    ("pool",),
    "Cost per week of the advised sizes minus the static size at the catalog's rates "
    "(negative: a saving).",
)
POOL_USAGE_BY_HOUR = MetricSpec(
    "impactwatch_pool_usage_by_hour_slots",
    "gauge",
    ("pool", "day", "hour", "state"),
    "Mean slots of the pool running or queued (state) in each hour of week over the advice's "
    "history; day is 1 Mon .. 7 Sun, hour 00 .. 23, in the advice's time zone.",
)
POOL_ADVICE_LAST_SUCCESS = MetricSpec(
    "impactwatch_pool_advice_last_success_timestamp_seconds",
    "gauge",
    (),
    "When the pool advice was last computed (Unix time).",
)
POOL_ADVICE_ERRORS = MetricSpec(
    "impactwatch_pool_advice_errors_total",
    "counter",
    ("reason",),
    "Failed pool advice computations by reason (state_db, airflow_api).",
)
POOL_APPLY_CHANGES = MetricSpec(
    "impactwatch_pool_apply_changes_total",
    "counter",
    ("pool", "action"),
    "Pools `impactwatch pools apply --loop --listen` handled, by what it did (action: set, "
    "would_set on a dry run, unchanged, refused, failed).",
)
POOL_APPLY_ACTIONS = ("set", "would_set", "unchanged", "refused", "failed")
POOL_ADVICE_METRICS: tuple[MetricSpec, ...] = (
    POOL_ADVISED_SLOTS,
    POOL_ADVICE_WAIT_SAVED,
    POOL_ADVICE_SLOT_HOURS_FREED,
    POOL_ADVICE_COST_DIFFERENCE,
    POOL_USAGE_BY_HOUR,
    POOL_ADVICE_LAST_SUCCESS,
    POOL_ADVICE_ERRORS,
    POOL_APPLY_CHANGES,
)
POOL_ADVICE_ERROR_REASONS = ("state_db", "airflow_api")
POOL_USAGE_STATES = ("running", "queued")  # POOL_USAGE_BY_HOUR's `state`

# Values of bounded labels (SLA_BREACHES' `kind` and `severity`: `impactwatch.contract.alerts`).
POOL_STATES = ("total", "running", "queued", "open")

# --- router self-metrics --------------------------------------------------------------------------
# ADDED BY alert_rules (issue 4), outside the collector: the "router failing to deliver" alert is
# defined on this name. The router must export exactly this family (a counter incremented once
# per Slack Web API call, by API method and outcome). Not part of ALL_METRICS: the collector does
# not export it.
ROUTER_SLACK_CALLS = MetricSpec(
    "impactwatch_router_slack_calls_total",
    "counter",
    ("method", "outcome"),
    "Slack Web API calls by method (chat.postMessage, chat.update, ...) and outcome "
    "(ok, failed, rate_limited).",
)
ROUTER_METRICS: tuple[MetricSpec, ...] = (ROUTER_SLACK_CALLS,)
SLACK_CALL_OUTCOMES = ("ok", "failed", "rate_limited")

# --- router self-metrics ----------------------------------------------------------------------
# The escalation router (impactwatch/router/): Alertmanager webhooks in, Slack incidents out.
# Extends the block above (ROUTER_SLACK_CALLS and its outcomes are alert_rules' contract, kept
# as defined there); ROUTER_METRICS below is every family the router exports.
WEBHOOK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)

ROUTER_NOTIFICATIONS = MetricSpec(
    "impactwatch_router_notifications_total",
    "counter",
    ("outcome",),
    "Alertmanager webhook requests by outcome (accepted, unauthorized, invalid, too_large, "
    "failed).",
)
ROUTER_ALERTS = MetricSpec(
    "impactwatch_router_alerts_total",
    "counter",
    ("outcome",),
    "Alerts in accepted notifications by outcome (new, updated, resolved, duplicate, stale, "
    "unknown_resolved, suppressed); duplicates are repeats and HA copies that changed nothing; "
    "suppressed are silenced or inhibited in Alertmanager.",
)
ROUTER_WEBHOOK_DURATION = MetricSpec(
    "impactwatch_router_webhook_duration_seconds",
    "histogram",
    (),
    "Time to answer an Alertmanager webhook (decision and commit; delivery is asynchronous).",
    WEBHOOK_BUCKETS,
)
ROUTER_OPEN_INCIDENTS = MetricSpec(
    "impactwatch_router_open_incidents",
    "gauge",
    ("team", "severity"),
    "Incidents open now, by owning team and severity.",
)
ROUTER_OUTBOX_DEPTH = MetricSpec(
    "impactwatch_router_outbox_depth",
    "gauge",
    (),
    "Slack messages waiting for delivery (posts, updates, replies not yet done).",
)
ROUTER_OUTBOX_OLDEST = MetricSpec(
    "impactwatch_router_outbox_oldest_seconds",
    "gauge",
    (),
    "Age of the oldest undelivered Slack message, since it first wanted delivery (held back "
    "by retries, backoffs and holds included): grows while Slack refuses the router.",
)
ROUTER_ESCALATIONS = MetricSpec(
    "impactwatch_router_escalations_total",
    "counter",
    ("team",),
    "Escalation steps fired, by owning team.",
)
ROUTER_INTERACTIONS = MetricSpec(
    "impactwatch_router_interactions_total",
    "counter",
    ("action", "outcome"),
    "Slack button presses by action (ack, snooze, not_actionable, link) and outcome.",
)
ROUTER_NOT_ACTIONABLE = MetricSpec(
    "impactwatch_router_not_actionable_total",
    "counter",
    ("alertname", "team"),
    "'Not actionable' feedback per alert rule: which rules are noise.",
)
ROUTER_DIGESTS = MetricSpec(
    "impactwatch_router_digests_total",
    "counter",
    ("team",),
    "Daily digests queued, by team.",
)
ROUTER_VALUES_ADJUSTED = MetricSpec(
    "impactwatch_router_values_adjusted_total",
    "counter",
    ("field", "reason"),
    "Values of accepted notifications stored changed, by field (label, annotation, time, ...) "
    "and reason (too_long: shortened with its length noted; control_character: replaced; "
    "out_of_range: a time clamped and shown as out of range).",
)
ROUTER_STORE_FAILURES = MetricSpec(
    "impactwatch_router_store_failures_total",
    "counter",
    ("operation", "reason"),
    "Failed state-DB writes by operation (notification, interaction, timers, delivery) and "
    "reason (unavailable, rejected, conflict, other).",
)
ROUTER_SLACK_ERRORS = MetricSpec(
    "impactwatch_router_slack_errors_total",
    "counter",
    ("method", "code"),
    "Slack calls that failed, by method and Slack's error code (code: channel_not_found, "
    "invalid_auth, ...; other codes as `other`, HTTP failures as http_error, unreachable).",
)
ROUTER_MESSAGES_MOVED = MetricSpec(
    "impactwatch_router_messages_moved_total",
    "counter",
    ("team", "code"),
    "Messages moved to the team's fallback channel because Slack refused theirs for good.",
)
ROUTER_DELIVERY_HELD = MetricSpec(
    "impactwatch_router_delivery_held_total",
    "counter",
    ("reason",),
    "Deliveries put off for long: token (the bot token is refused: all delivery paused), "
    "permanent (Slack refuses this message), no_fallback (no channel left to move it to), "
    "render_failed (the message could not be built).",
)
ROUTER_FAILURE_LOOKUPS = MetricSpec(
    "impactwatch_router_failure_lookups_total",
    "counter",
    ("outcome",),
    "Failure details asked of the collector (GET /v1/failures) by outcome: ok, not_found, "
    "unavailable (no answer, or not 200 in time), invalid (an answer out of bounds).",
)

# The full set: replaces the one-family tuple of the block above.
ROUTER_METRICS: tuple[MetricSpec, ...] = (
    ROUTER_NOTIFICATIONS,
    ROUTER_ALERTS,
    ROUTER_WEBHOOK_DURATION,
    ROUTER_OPEN_INCIDENTS,
    ROUTER_SLACK_CALLS,
    ROUTER_OUTBOX_DEPTH,
    ROUTER_OUTBOX_OLDEST,
    ROUTER_ESCALATIONS,
    ROUTER_INTERACTIONS,
    ROUTER_NOT_ACTIONABLE,
    ROUTER_DIGESTS,
    ROUTER_VALUES_ADJUSTED,
    ROUTER_STORE_FAILURES,
    ROUTER_SLACK_ERRORS,
    ROUTER_MESSAGES_MOVED,
    ROUTER_DELIVERY_HELD,
    ROUTER_FAILURE_LOOKUPS,
)
