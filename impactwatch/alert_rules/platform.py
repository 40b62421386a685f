"""Platform rules: Airflow's scheduler, pools, XCom and DAG parsing; impactwatch's own health.

All go to the platform team (`settings.platform_team`, else the catalog's `defaults.team`) with
`kind="platform"` and a `component` label naming what is broken. Thresholds come from the
settings. Statistical signals (scheduler lag, router failure share, pool saturation) hover
around their limits, so they get a long `for:` and `keep_firing_for` (hysteresis: one incident,
not ten); timestamp-based ones (heartbeat, last poll) grow monotonically and need neither.
"""

from __future__ import annotations

from dataclasses import replace

from impactwatch.alert_rules.promql import (
    VALUE_AGE,
    VALUE_BYTES,
    VALUE_DURATION,
    VALUE_INT,
    VALUE_PERCENT,
    current,
    human_bytes,
    human_duration,
    latest,
    lookup_age,
    prom_duration,
)
from impactwatch.alert_rules.rules_model import Alert, Group, runbook_path
from impactwatch.alert_rules.settings import RuleSettings
from impactwatch.catalog.model import Catalog
from impactwatch.contract import metrics as c
from impactwatch.contract.alerts import (
    COLLECTOR_DOWN,
    COLLECTOR_STALE,
    COMPONENT,
    CRITICAL,
    DAG_IMPORT_ERRORS,
    PLATFORM,
    POOL_STARVING,
    ROUTER_FAILING,
    ROUTER_OUTBOX_STUCK,
    SCHEDULER_DOWN,
    SCHEDULER_LAGGING,
    TEAM,
    WARNING,
    XCOM_BLOAT,
)
from impactwatch.contract.promql import agg, eq, increase, number, quantile, quote, selector

GROUP = "impactwatch-platform"
assert {"queued", "open"} <= set(c.POOL_STATES)
assert {"ok", "failed"} <= set(c.SLACK_CALL_OUTCOMES)


def platform_team(catalog: Catalog, settings: RuleSettings) -> str:
    return settings.platform_team or catalog.defaults.team


def platform_group(catalog: Catalog, settings: RuleSettings) -> Group:
    team = platform_team(catalog, settings)
    window = prom_duration(settings.series_gap_tolerance)
    builders = (_scheduler, _pools_xcom_parsing, _collector, _router)
    alerts = [a for build in builders for a in build(settings, window)]
    return Group(
        GROUP,
        f"Platform health: Airflow's scheduler, pools, XCom and DAG parsing, and impactwatch's "
        f"own collector and router. All owned by the platform team ({team}). Uses "
        "keep_firing_for (hysteresis): needs Prometheus 2.42 or later.",
        tuple(replace(a, labels={TEAM: team, **a.labels}) for a in alerts),
    )


def _ladder(warning: Alert, critical_expr: str) -> list[Alert]:
    """The warning, and its critical twin past twice the threshold."""
    about = warning.description
    return [
        replace(warning, description=f"{about} Escalates to critical at twice the limit."),
        replace(
            warning,
            expr=critical_expr,
            severity=CRITICAL,
            description=f"{about} Critical: past twice the limit.",
        ),
    ]


def _scheduler(s: RuleSettings, window: str) -> list[Alert]:
    silent = f"time() - {latest(c.SCHEDULER_HEARTBEAT, (), window)}"
    limit = s.scheduler_heartbeat_stale
    down = Alert(
        name=SCHEDULER_DOWN,
        expr=f"{silent}\n  > {number(limit)}",
        severity=WARNING,
        kind=PLATFORM,
        summary=(
            f"Airflow is not scheduling: no scheduler heartbeat for {VALUE_AGE} "
            f"(limit {human_duration(limit)})"
        ),
        description=(
            "No pipeline starts and no data product is refreshed until a scheduler is back."
        ),
        runbook=runbook_path(SCHEDULER_DOWN),
        for_seconds=s.platform_for,
        labels={COMPONENT: "scheduler"},
    )
    q, lag = s.scheduler_lag_quantile, s.scheduler_lag
    lag_quantile = quantile(q, c.DAG_RUN_SCHEDULE_DELAY, (), prom_duration(s.scheduler_lag_window))
    lagging = Alert(
        name=SCHEDULER_LAGGING,
        expr=f"{lag_quantile}\n  > {number(lag)}",
        severity=WARNING,
        kind=PLATFORM,
        summary=(
            f"Pipelines start late: runs begin {VALUE_DURATION} after they are due "
            f"(p{q * 100:g} over {human_duration(s.scheduler_lag_window)}, "
            f"limit {human_duration(lag)})"
        ),
        description=(
            "Every scheduled pipeline starts this late, so every deadline and freshness limit "
            "has that much less slack."
        ),
        runbook=runbook_path(SCHEDULER_LAGGING),
        for_seconds=s.noisy_for,
        keep_firing_seconds=s.noisy_keep_firing_for,
        labels={COMPONENT: "scheduler"},
    )
    return [
        *_ladder(down, f"{silent}\n  > {number(2 * limit)}"),
        *_ladder(lagging, f"{lag_quantile}\n  > {number(2 * lag)}"),
    ]


def _pools_xcom_parsing(s: RuleSettings, window: str) -> list[Alert]:
    queued = current(c.POOL_SLOTS, ("pool",), eq("state", "queued"))
    open_ = current(c.POOL_SLOTS, ("pool",), eq("state", "open"))
    starving = Alert(
        name=POOL_STARVING,
        expr=f"{queued} > 0\nand on (pool)\n{open_} == 0",
        severity=WARNING,
        kind=PLATFORM,
        summary=(
            f"Airflow pool {{{{ $labels.pool }}}} is full: {VALUE_INT} task(s) waiting "
            f"for a slot for over {human_duration(s.pool_starving_for)}"
        ),
        description=(
            "Pipelines using this pool run late, and so do the data products they refresh."
        ),
        runbook=runbook_path(POOL_STARVING),
        for_seconds=s.pool_starving_for,
        keep_firing_seconds=s.noisy_keep_firing_for,
        labels={COMPONENT: "pool"},
    )
    largest, limit = current(c.XCOM_LARGEST, ("dag_id", "team")), s.xcom_bloat_bytes
    bloat = Alert(
        name=XCOM_BLOAT,
        expr=f"{largest}\n  > {number(limit)}",
        severity=WARNING,
        kind=PLATFORM,
        summary=(
            f"Pipeline {{{{ $labels.dag_id }}}} passes {VALUE_BYTES} through XCom "
            f"(limit {human_bytes(limit)})"
        ),
        description=(
            "XComs live in Airflow's metadata database: large ones slow the scheduler and the "
            "UI for every pipeline. Pass a reference (a path, a table) instead of the data."
        ),
        runbook=runbook_path(XCOM_BLOAT),
        for_seconds=s.platform_for,
        labels={COMPONENT: "xcom", TEAM: "{{ $labels.team }}"},  # the DAG's owner
    )
    errors = Alert(
        name=DAG_IMPORT_ERRORS,
        expr=f"{agg('max', (), selector(c.DAG_IMPORT_ERRORS))} > 0",
        severity=WARNING,
        kind=PLATFORM,
        summary=f"{VALUE_INT} DAG file(s) fail to load: their pipelines do not run",
        description=(
            "Airflow cannot parse these files, so the pipelines they define are neither "
            "scheduled nor shown; their data products will go stale."
        ),
        runbook=runbook_path(DAG_IMPORT_ERRORS),
        for_seconds=s.import_errors_for,
        labels={COMPONENT: "dag_parsing"},
    )
    return [
        starving,
        *_ladder(bloat, f"{largest}\n  > {number(2 * limit)}"),
        errors,
    ]


def _collector(s: RuleSettings, window: str) -> list[Alert]:
    up = f"up{{job={quote(s.collector_job)}}}"
    down = Alert(
        name=COLLECTOR_DOWN,
        expr=f"{up} == 0\nor\nabsent({up})",
        severity=CRITICAL,
        kind=PLATFORM,
        summary="impactwatch is blind: a collector is down or not scraped",
        description=(
            "Without the collector no freshness, deadline or failure alert can fire: the "
            "business would not hear about stale data. Prometheus job "
            f"{s.collector_job}{{{{ with $labels.instance }}}}, target {{{{ . }}}}{{{{ end }}}}."
        ),
        runbook=runbook_path(COLLECTOR_DOWN),
        for_seconds=s.collector_down_for,
        labels={COMPONENT: "collector"},
    )
    polled = f"time() - {latest(c.COLLECTOR_LAST_POLL, (), window)}"
    limit = s.collector_stale_after
    stale = Alert(
        name=COLLECTOR_STALE,
        expr=f"{latest(c.COLLECTOR_STALE, (), window)} == 1",
        severity=WARNING,
        kind=PLATFORM,
        summary="impactwatch cannot read Airflow's database: alerts run on old data",
        description=(
            "The collector serves its last state. Last good read: "
            f"{lookup_age(c.COLLECTOR_LAST_POLL)} ago. Freshness alerts keep counting (ages "
            "are computed by Prometheus), but new runs, failures and updates are not seen. "
            f"Critical once the last good read is over {human_duration(2 * limit)} old."
        ),
        runbook=runbook_path(COLLECTOR_STALE),
        for_seconds=limit,
        labels={COMPONENT: "collector"},
    )
    critical = replace(
        stale,
        expr=f"{polled}\n  > {number(2 * limit)}",
        severity=CRITICAL,
        summary=f"impactwatch has not read Airflow's database for {VALUE_AGE}",
        for_seconds=0.0,
    )
    return [down, stale, critical]


def _router(s: RuleSettings, window: str) -> list[Alert]:
    span = prom_duration(s.router_failure_window)
    failed = agg("sum", (), increase(c.ROUTER_SLACK_CALLS, span, eq("outcome", "failed")))
    calls = agg("sum", (), increase(c.ROUTER_SLACK_CALLS, span))
    share = f"{failed}\n  /\n{calls}"
    ratio = s.router_failure_ratio
    failing = Alert(
        name=ROUTER_FAILING,
        expr=f"(\n  {share.replace(chr(10), chr(10) + '  ')}\n) > {number(ratio)}",
        severity=WARNING,
        kind=PLATFORM,
        summary=(
            f"Slack alerts are not getting through: {VALUE_PERCENT} of Slack calls failed "
            f"over {human_duration(s.router_failure_window)}"
        ),
        description=(
            "Owners may not hear about stale data or late reports until this clears; meanwhile "
            "watch Alertmanager's UI for open incidents."
        ),
        runbook=runbook_path(ROUTER_FAILING),
        for_seconds=s.noisy_for,
        keep_firing_seconds=s.noisy_keep_firing_for,
        labels={COMPONENT: "router"},
    )
    critical_expr = failing.expr.replace(f"> {number(ratio)}", f"> {number(min(2 * ratio, 0.99))}")
    oldest, limit = current(c.ROUTER_OUTBOX_OLDEST, ()), s.router_outbox_age
    stuck = Alert(
        name=ROUTER_OUTBOX_STUCK,
        expr=f"{oldest}\n  > {number(limit)}",
        severity=WARNING,
        kind=PLATFORM,
        summary=(
            f"A Slack message has waited {VALUE_AGE} for delivery "
            f"(limit {human_duration(limit)}): owners are not being told"
        ),
        description=(
            "Slack refuses the router (a revoked token, a missing scope, every fallback "
            "channel refused) or delivery is stuck: incidents are not reaching their owners. "
            "This alert is also sent outside Slack. The router's log and "
            "impactwatch_router_slack_errors_total name Slack's error."
        ),
        runbook=runbook_path(ROUTER_OUTBOX_STUCK),
        for_seconds=0.0,  # the age grows monotonically: no flapping to wait out
        labels={COMPONENT: "router"},
    )
    return [
        *_ladder(failing, critical_expr),
        *_ladder(stuck, f"{oldest}\n  > {number(2 * limit)}"),
    ]
