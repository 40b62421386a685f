"""The "Platform health" dashboard, for the data platform team: Airflow's scheduler, pools,
XCom and DAG parsing, and impactwatch's own collector and router.

Thresholds are the platform alerts' (`impactwatch.contract.thresholds`, the shipped limits): a
panel turns red where the matching alert fires, from one source.
"""

from __future__ import annotations

from grafanalib import core as g

from impactwatch.catalog.model import Catalog
from impactwatch.contract import metrics as c
from impactwatch.contract.alerts import ALERTNAME, COMPONENT, KIND, PLATFORM, SEVERITY
from impactwatch.contract.promql import (
    agg,
    alternation,
    eq,
    increase,
    number,
    quantile,
    rate,
    selector,
)
from impactwatch.contract.thresholds import PlatformThresholds
from impactwatch.dashboards import links
from impactwatch.dashboards import style as s
from impactwatch.dashboards.dashboard import build, variable
from impactwatch.dashboards.panels import (
    Column,
    Label,
    Layout,
    Query,
    bar_gauge,
    matrix,
    stat,
    table,
    timeseries,
)
from impactwatch.dashboards.products import firing
from impactwatch.dashboards.promql import RANGE, RATE_INTERVAL, var

ABOUT = (
    "Airflow's plumbing and impactwatch's own health: scheduler lag and heartbeat, task queue "
    "wait and pool use, DAG files that fail to parse, the largest XComs, the collector's polls "
    "and events, and the router's Slack delivery and escalations. Panels turn red where the "
    "platform alerts fire."
)
POOL = (var("pool"),)


def _mean_rate(metric: c.MetricSpec, labels: tuple[str, ...] = ()) -> str:
    total = agg("sum", labels, rate(metric, RATE_INTERVAL, suffix="sum"))
    count = agg("sum", labels, rate(metric, RATE_INTERVAL, suffix="count"))
    return f"{total}\n/\n({count} > 0)"


def _airflow(layout: Layout, limits: PlatformThresholds) -> None:
    layout.row("Airflow")
    layout.add(
        stat(
            "Scheduler heartbeat age",
            "Time since any Airflow scheduler last reported in. Red: the scheduler-down alert.",
            [Query(f"time() - {agg('max', [], selector(c.SCHEDULER_HEARTBEAT))}")],
            s.SECONDS,
            thresholds=s.limit_steps(limits.scheduler_heartbeat_stale),
        ),
        s.QUARTER,
        s.STAT_H,
    )
    q = limits.scheduler_lag_quantile  # the lag alert's quantile: "p95", "95th percentile"
    delays = increase(c.DAG_RUN_SCHEDULE_DELAY, RANGE, suffix="bucket")
    lag = f"histogram_quantile({number(q)}, {agg('sum', ['le'], delays)})"
    layout.add(
        stat(
            f"Scheduler lag (p{q * 100:g})",
            f"{q * 100:g}th percentile of how late scheduled runs started after they were due, "
            "over the selected range (bucketed: values are bucket bounds).",
            [Query(lag)],
            s.SECONDS,
            thresholds=s.limit_steps(limits.scheduler_lag),
        ),
        s.QUARTER,
        s.STAT_H,
    )
    layout.add(
        stat(
            "DAG files failing to parse",
            "DAG files Airflow cannot import right now: their DAGs do not run.",
            [Query(agg("max", [], selector(c.DAG_IMPORT_ERRORS)))],
            s.COUNT,
            thresholds=s.ANY_IS_BAD,
            decimals=0,
        ),
        s.QUARTER,
        s.STAT_H,
    )
    layout.add(
        stat(
            "Open platform incidents",
            "Platform alerts firing now (scheduler, pools, XCom, parsing, collector, router).",
            [Query(f"count({firing(eq(KIND, PLATFORM))})")],
            s.COUNT,
            thresholds=s.ANY_IS_BAD,
            no_value="0",
            decimals=0,
        ),
        s.QUARTER,
        s.STAT_H,
    )
    layout.add(
        timeseries(
            "Scheduler lag",
            f"How late scheduled runs start after they are due: {q * 100:g}th percentile and mean.",
            [
                Query(quantile(q, c.DAG_RUN_SCHEDULE_DELAY, (), RATE_INTERVAL), f"p{q * 100:g}"),
                Query(_mean_rate(c.DAG_RUN_SCHEDULE_DELAY), "mean"),
            ],
            s.SECONDS,
            thresholds=s.steps(s.GREEN, (limits.scheduler_lag, s.RED)),
            threshold_lines=True,
        ),
        s.HALF,
        s.CHART_H,
    )
    layout.add(
        timeseries(
            "Task queue wait by pool (p95)",
            "How long tasks waited between being queued and starting, 95th percentile by pool: "
            "a full pool or too few workers makes it grow.",
            [Query(quantile(0.95, c.TASK_QUEUED, ("pool",), RATE_INTERVAL, *POOL), "{{pool}}")],
            s.SECONDS,
        ),
        s.HALF,
        s.CHART_H,
    )
    slots = {
        state: agg("max", ["pool"], selector(c.POOL_SLOTS, *POOL, eq("state", state)))
        for state in c.POOL_STATES
    }
    layout.add(
        timeseries(
            "Pool slots: used, queued, total",
            "Slots of each pool taken by running tasks, wanted by queued tasks, and in total.",
            [
                Query(slots["running"], "{{pool}} used"),
                Query(slots["queued"], "{{pool}} queued"),
                Query(slots["total"], "{{pool}} total"),
            ],
            s.COUNT,
        ),
        s.HALF,
        s.CHART_H,
    )
    layout.add(
        bar_gauge(
            "Pool use now",
            "Share of each pool's slots in use.",
            [Query(f"{slots['running']}\n/\n({slots['total']} > 0)", "{{pool}}")],
            s.SHARE,
            thresholds=s.steps(s.GREEN, (0.8, s.AMBER), (1.0, s.RED)),
            maximum=1,
        ),
        s.QUARTER,
        s.CHART_H,
    )
    layout.add(
        bar_gauge(
            "Largest XComs",
            "Largest XCom value each DAG wrote in the last 24 hours. Red: the XCom bloat alert.",
            [Query(f"topk(10, {agg('max', ['dag_id'], selector(c.XCOM_LARGEST))})", "{{dag_id}}")],
            s.BYTES,
            thresholds=s.limit_steps(limits.xcom_bloat_bytes),
        ),
        s.QUARTER,
        s.CHART_H,
    )
    platform_alerts = firing(eq(KIND, PLATFORM))
    incidents = agg("count", [ALERTNAME, COMPONENT, SEVERITY], platform_alerts)
    layout.add(
        table(
            "Platform alerts firing",
            "Each platform alert firing now, with the component it is about.",
            [
                Label(ALERTNAME, "Alert"),
                Label(COMPONENT, "Component"),
                Label(SEVERITY, "Severity"),
            ],
            [Column("Firing", incidents, decimals=0)],
        ),
        s.FULL,
        s.CHART_H,
    )


def _pool_sizing(layout: Layout) -> None:
    """The pool advice (`impactwatch pools advise --listen`, docs/pools.md): usage by hour of
    week and the advised sizes against Airflow's. Empty until that job is scraped."""
    layout.row("Pool sizing (advice)")
    for state, what in (("running", "used"), ("queued", "queued")):
        usage = agg(
            "sum",
            ["day", "hour"],
            selector(c.POOL_USAGE_BY_HOUR, *POOL, eq("state", state)),
        )
        layout.add(
            matrix(
                f"Pool slots {what} by hour of week",
                f"Mean slots {what} in each hour of the week over the advice's history (4 weeks "
                "by default, in its time zone), summed over the pools picked above: pick one "
                "pool to see its own pattern. From `impactwatch pools advise --listen`.",
                Query(usage),
                "day",
                "hour",
                s.COUNT,
            ),
            s.FULL,
            s.TABLE_H,
        )
    layout.add(
        timeseries(
            "Advised vs configured slots",
            "The size the pool advice gives each pool for the current time window, beside the "
            "size configured in Airflow. `impactwatch pools apply --yes` makes them meet.",
            [
                Query(
                    agg("max", ["pool"], selector(c.POOL_ADVISED_SLOTS, *POOL)), "{{pool}} advised"
                ),
                Query(
                    agg("max", ["pool"], selector(c.POOL_SLOTS, *POOL, eq("state", "total"))),
                    "{{pool}} configured",
                ),
            ],
            s.COUNT,
        ),
        s.HALF,
        s.CHART_H,
    )
    layout.add(
        bar_gauge(
            "Queue wait saved by the advice, per week",
            "Queue wait of SLA-bearing pipelines' tasks per week the advised sizes save against "
            "the configured ones, the history replayed under both (docs/pools.md).",
            [Query(agg("max", ["pool"], selector(c.POOL_ADVICE_WAIT_SAVED, *POOL)), "{{pool}}")],
            s.SECONDS,
            thresholds=s.steps(s.GREEN),
        ),
        s.HALF,
        s.CHART_H,
    )


def _collector(layout: Layout, limits: PlatformThresholds) -> None:
    layout.row("impactwatch collector")
    last_poll = f"time() - {agg('max', [], selector(c.COLLECTOR_LAST_POLL))}"
    layout.add(
        stat(
            "Last successful poll",
            "Time since the collector last read Airflow's database. Red: the collector-stale "
            "alert (its values are getting old).",
            [Query(last_poll)],
            s.SECONDS,
            thresholds=s.limit_steps(limits.collector_stale_after),
        ),
        s.QUARTER,
        s.STAT_H,
    )
    layout.add(
        stat(
            "Serving stale data",
            "Yes while the collector cannot read Airflow's database and serves its last state.",
            [Query(agg("max", [], selector(c.COLLECTOR_STALE)))],
            s.COUNT,
            thresholds=s.steps(s.GREY),
            mappings=s.value_mappings({0: ("No", s.GREEN), 1: ("Yes", s.RED)}),
        ),
        s.QUARTER,
        s.STAT_H,
    )
    refused = ("outcome", "=~", alternation(c.INTAKE_REFUSALS))
    rejected = increase(c.COLLECTOR_EVENTS, RANGE, refused)
    layout.add(
        stat(
            "Event batches refused",
            "Requests from the listener the collector's intake refused or failed over the "
            "selected range, by reason (invalid, too_large, unauthorized, queue_full, "
            "store_error, ...): the poller recovers their events later.",
            [Query(f"round({agg('sum', ['outcome'], rejected)})", "{{outcome}}")],
            s.COUNT,
            thresholds=s.ANY_IS_BAD,
            no_value="0",
            decimals=0,
        ),
        s.QUARTER,
        s.STAT_H,
    )
    errors = increase(c.COLLECTOR_DB_ERRORS, RANGE)
    layout.add(
        stat(
            "Database errors",
            "Failed reads of Airflow's database and failed writes of the collector's state, "
            "over the selected range.",
            [Query(f"round({agg('sum', ['db'], errors)})", "{{db}}")],
            s.COUNT,
            thresholds=s.ANY_IS_BAD,
            named=True,
            decimals=0,
        ),
        s.QUARTER,
        s.STAT_H,
    )
    layout.add(
        timeseries(
            "Poll duration",
            "Wall time of one poll of Airflow's database: 95th percentile and mean.",
            [
                Query(quantile(0.95, c.COLLECTOR_POLL_DURATION, (), RATE_INTERVAL), "p95"),
                Query(_mean_rate(c.COLLECTOR_POLL_DURATION), "mean"),
            ],
            s.SECONDS,
        ),
        s.HALF,
        s.CHART_H,
    )
    events = agg("sum", ["source", "outcome"], rate(c.COLLECTOR_EVENTS, RATE_INTERVAL))
    layout.add(
        timeseries(
            "Events by source and outcome",
            "Events per second from the poller and the listener: new, updated, duplicate "
            "(seen by both, counted once), unknown_dag (stored, kept out of the metrics until "
            "Airflow knows the DAG), and refused requests by reason.",
            [Query(events, "{{source}} {{outcome}}")],
            s.PER_SECOND,
        ),
        s.HALF,
        s.CHART_H,
    )


def _router(layout: Layout) -> None:
    layout.row("impactwatch router")
    failed = increase(c.ROUTER_SLACK_CALLS, RANGE, ("outcome", "!=", "ok"))
    layout.add(
        stat(
            "Slack delivery failures",
            "Slack API calls that failed or were rate limited over the selected range (the "
            "router retries them; a growing count means messages are late).",
            [Query(f"round({agg('sum', [], failed)})")],
            s.COUNT,
            thresholds=s.ANY_IS_BAD,
            no_value="0",
            decimals=0,
        ),
        s.QUARTER,
        s.STAT_H,
    )
    escalations = agg("sum", ["team"], increase(c.ROUTER_ESCALATIONS, RANGE))
    layout.add(
        stat(
            "Escalations",
            "Escalation steps fired over the selected range, by team: incidents nobody "
            "acknowledged in time.",
            [Query(f"round({escalations})", "{{team}}")],
            s.COUNT,
            thresholds=s.steps(s.GREEN, (1.0, s.AMBER)),
            named=True,
            decimals=0,
        ),
        s.QUARTER,
        s.STAT_H,
    )
    layout.add(
        stat(
            "Messages waiting",
            "Slack messages (posts, updates, replies) waiting for delivery.",
            [Query(agg("max", [], selector(c.ROUTER_OUTBOX_DEPTH)))],
            s.COUNT,
            thresholds=s.steps(s.GREEN, (10.0, s.AMBER), (100.0, s.RED)),
            decimals=0,
        ),
        s.QUARTER,
        s.STAT_H,
    )
    layout.add(
        stat(
            "Oldest message waiting",
            "How long the oldest due Slack message has waited for delivery.",
            [Query(agg("max", [], selector(c.ROUTER_OUTBOX_OLDEST)))],
            s.SECONDS,
            thresholds=s.steps(s.GREEN, (60.0, s.AMBER), (300.0, s.RED)),
        ),
        s.QUARTER,
        s.STAT_H,
    )
    calls = agg("sum", ["outcome"], rate(c.ROUTER_SLACK_CALLS, RATE_INTERVAL))
    layout.add(
        timeseries(
            "Slack calls by outcome",
            "Slack Web API calls per second: ok, failed, rate limited.",
            [Query(calls, "{{outcome}}")],
            s.PER_SECOND,
            stack=True,
        ),
        s.THIRD,
        s.CHART_H,
    )
    layout.add(
        timeseries(
            "Open incidents by team",
            "Incidents the router holds open, by owning team and severity.",
            [
                Query(
                    agg("sum", ["team", "severity"], selector(c.ROUTER_OPEN_INCIDENTS)),
                    "{{team}} {{severity}}",
                )
            ],
            s.COUNT,
            stack=True,
        ),
        s.THIRD,
        s.CHART_H,
    )
    notifications = agg("sum", ["outcome"], rate(c.ROUTER_NOTIFICATIONS, RATE_INTERVAL))
    layout.add(
        timeseries(
            "Alertmanager notifications by outcome",
            "Webhook requests from Alertmanager per second: accepted, or refused and why.",
            [Query(notifications, "{{outcome}}")],
            s.PER_SECOND,
            stack=True,
        ),
        s.THIRD,
        s.CHART_H,
    )


def platform(catalog: Catalog) -> g.Dashboard:
    """`catalog` is unused today (platform panels are catalog-free); taken for symmetry."""
    del catalog
    limits = PlatformThresholds()
    layout = Layout()
    _airflow(layout, limits)
    _pool_sizing(layout)
    _collector(layout, limits)
    _router(layout)
    variables = [variable("pool", "Pool", (c.POOL_SLOTS,))]
    return build(links.BOARDS[links.PLATFORM], ABOUT, variables, layout)
