"""The "Team" dashboard, one for all teams (a `team` variable): the team's data products and
pipelines, run durations against their limits, deadlines, breaches, and what it all costs."""

from __future__ import annotations

from grafanalib import core as g

from impactwatch.catalog.model import Catalog
from impactwatch.contract import metrics as c
from impactwatch.contract.alerts import DEADLINE, KIND, SEVERITY
from impactwatch.contract.promql import agg, eq, increase, selector
from impactwatch.dashboards import links
from impactwatch.dashboards import style as s
from impactwatch.dashboards.dashboard import build, variable
from impactwatch.dashboards.panels import (
    Column,
    Label,
    Layout,
    Query,
    bar_gauge,
    stat,
    table,
    timeseries,
)
from impactwatch.dashboards.products import product_table
from impactwatch.dashboards.promql import DAY, RANGE, RATE_INTERVAL, mean, per_day, var

ABOUT = (
    "One team's data products and pipelines (pick the team above): freshness, run durations "
    "against their limits, daily deadlines, SLA breaches, and the cost per run and per day."
)
SELECTED = (var("team"), var("dag_id"))


def _latest(metric: c.MetricSpec) -> str:
    return agg("max", c.DAG, selector(metric, *SELECTED))


def pipelines_table() -> g.Table:
    last_ok, last_failed = _latest(c.DAG_RUN_LAST_SUCCESS), _latest(c.DAG_RUN_LAST_FAILURE)
    runs = agg("sum", c.DAG, increase(c.DAG_RUN_DURATION, RANGE, *SELECTED, suffix="count"))
    failed = increase(c.DAG_RUN_DURATION, RANGE, *SELECTED, eq("state", "failed"), suffix="count")
    focus = s.link(
        "Show only ${__data.fields.dag_id}",
        links.panel_link(
            links.TEAM, team="${__data.fields.team}", dag_id="${__data.fields.dag_id}"
        ),
    )
    words = s.value_mappings({0: ("OK", s.GREEN), 1: ("Failed", s.RED)})
    deadline_words = s.value_mappings({0: ("On track", s.GREEN), 1: ("Missed", s.RED)})
    paused_words = s.value_mappings({0: ("Active", s.GREEN), 1: ("Paused", s.BLUE)})
    columns = [
        Column(
            "Latest run",
            f"{last_failed} > bool {last_ok}\n"
            f"or ({last_failed} unless on (dag_id) {last_ok}) * 0 + 1\n"
            f"or {last_ok} * 0",
            cell="color-background",
            mappings=words,
        ),
        Column("Last success", f"{last_ok} * 1000", unit=s.FROM_NOW),
        Column("Running for", _latest(c.DAG_RUN_OLDEST_RUNNING), unit=s.SECONDS),
        Column("Time limit", _latest(c.DAG_RUN_MAX_DURATION), unit=s.SECONDS),
        Column("Mean duration", mean(c.DAG_RUN_DURATION, c.DAG, RANGE, *SELECTED), unit=s.SECONDS),
        Column("Runs", f"round({runs})", decimals=0),
        Column("Failed runs", f"round({agg('sum', c.DAG, failed)})", decimals=0),
        Column("Next deadline", f"{_latest(c.DAG_RUN_DEADLINE)} * 1000", unit=s.FROM_NOW),
        Column(
            "Deadline",
            f"time() > bool {_latest(c.DAG_RUN_DEADLINE)}",
            cell="color-background",
            mappings=deadline_words,
        ),
        Column("State", _latest(c.DAG_PAUSED), cell="color-text", mappings=paused_words),
    ]
    labels = [Label("dag_id", "Pipeline", links=(focus,), width=220), Label("team", "Team")]
    return table(
        "Pipelines",
        "Each pipeline: did its latest run fail, when it last succeeded, how long a run in "
        "flight has been going against its limit, its mean duration and runs over the range, "
        "and its next daily deadline (Missed: no successful run by then).",
        labels,
        columns,
        sort_by="Latest run",
    )


def team(catalog: Catalog) -> g.Dashboard:
    board = links.BOARDS[links.TEAM]
    currency = s.currency_unit(catalog.cost.currency)
    spend = agg("sum", [], increase(c.DAG_RUN_COST, RANGE, *SELECTED, suffix="sum"))
    layout = Layout()
    layout.row("Data products")
    layout.add(
        product_table(
            catalog,
            [var("team")],
            "Data products of the team",
            "Status, age against its freshness limit, SLA compliance over the range, open "
            "incidents and cost per day of each data product the team owns.",
        ),
        s.FULL,
        s.TABLE_H,
    )
    layout.row("Pipelines")
    layout.add(pipelines_table(), s.FULL, s.TABLE_H)
    running = _latest(c.DAG_RUN_OLDEST_RUNNING)
    limit = _latest(c.DAG_RUN_MAX_DURATION)
    layout.add(
        timeseries(
            "Runs in flight against their time limit",
            "How long the oldest running run of each pipeline has been going, as a share of "
            "its time limit (max_duration): past 100% it breaches, past 200% it is critical.",
            [Query(f"{running}\n/ on (dag_id)\n{limit}", "{{dag_id}}")],
            s.SHARE,
            thresholds=s.SHARE_OF_LIMIT,
            threshold_lines=True,
        ),
        s.HALF,
        s.CHART_H,
    )
    layout.add(
        bar_gauge(
            "Mean run duration against its time limit",
            "Mean duration of each pipeline's runs finished in the range, as a share of its "
            "time limit.",
            [
                Query(
                    f"(\n{mean(c.DAG_RUN_DURATION, c.DAG, RANGE, *SELECTED)}\n)\n/ {limit}",
                    "{{dag_id}}",
                )
            ],
            s.SHARE,
            thresholds=s.steps(s.GREEN, (0.8, s.AMBER), (1.0, s.RED)),
            maximum=1.5,
        ),
        s.HALF,
        s.CHART_H,
    )
    layout.row("Deadlines and breaches")
    deadline = increase(c.SLA_BREACHES, RANGE, *SELECTED, eq(KIND, DEADLINE))
    layout.add(
        stat(
            "Deadlines missed",
            "Daily deadlines missed in the selected range (each missed deadline counts once).",
            [Query(f"round({agg('sum', [], deadline)})")],
            s.COUNT,
            thresholds=s.ANY_IS_BAD,
            no_value="0",
            decimals=0,
        ),
        s.QUARTER,
        s.CHART_H,
    )
    breaches = agg("sum", [KIND, SEVERITY], increase(c.SLA_BREACHES, RATE_INTERVAL, *SELECTED))
    layout.add(
        timeseries(
            "SLA breaches by kind",
            "Breaches over time by kind (freshness, duration, deadline) and severity. A breach "
            "that escalates to critical shows once as warning and once as critical.",
            [Query(breaches, "{{kind}} ({{severity}})")],
            s.COUNT,
            stack=True,
            bars=True,
        ),
        s.QUARTER * 3,
        s.CHART_H,
    )
    layout.row("Cost")
    runs = agg("sum", [], increase(c.DAG_RUN_COST, RANGE, *SELECTED, suffix="count"))
    layout.add(
        stat(
            "Cost per day",
            "The team's pipelines' spend per day, averaged over the selected range.",
            [Query(per_day(spend))],
            currency,
            thresholds=s.steps(s.BLUE),
            decimals=2,
        ),
        s.QUARTER,
        s.CHART_H,
    )
    layout.add(
        stat(
            "Cost per run",
            "Mean cost of one run over the selected range.",
            [Query(f"{spend}\n/\n({runs} > 0)")],
            currency,
            thresholds=s.steps(s.BLUE),
            decimals=4,
        ),
        s.QUARTER,
        s.CHART_H,
    )
    by_dag_range = agg("sum", ["dag_id"], increase(c.DAG_RUN_COST, RANGE, *SELECTED, suffix="sum"))
    by_dag_day = agg("sum", ["dag_id"], increase(c.DAG_RUN_COST, DAY, *SELECTED, suffix="sum"))
    runs_day = agg("sum", ["dag_id"], increase(c.DAG_RUN_COST, DAY, *SELECTED, suffix="count"))
    layout.add(
        timeseries(
            "Cost per day, trend",
            "Each pipeline's spend over the trailing 24 hours, at each point in time.",
            [Query(by_dag_day, "{{dag_id}}")],
            currency,
            stack=True,
        ),
        s.HALF,
        s.CHART_H,
    )
    layout.add(
        bar_gauge(
            "Most expensive pipelines",
            "The team's pipelines by spend over the selected range.",
            [Query(f"topk(10, {by_dag_range})", "{{dag_id}}")],
            currency,
            thresholds=s.steps(s.BLUE),
        ),
        s.HALF,
        s.CHART_H,
    )
    layout.add(
        timeseries(
            "Cost per run, trend",
            "Each pipeline's mean cost per run over the trailing 24 hours.",
            [Query(f"{by_dag_day}\n/\n({runs_day} > 0)", "{{dag_id}}")],
            currency,
        ),
        s.HALF,
        s.CHART_H,
    )
    by_team_day = agg("sum", ["team"], increase(c.DAG_RUN_COST, DAY, *SELECTED, suffix="sum"))
    layout.add(
        timeseries(
            "Cost per day by team",
            "Each team's spend over the trailing 24 hours, at each point in time (pick All "
            "teams above to compare them). A run counts when it finishes.",
            [Query(by_team_day, "{{team}}")],
            currency,
            stack=True,
        ),
        s.HALF,
        s.CHART_H,
    )
    by_task = agg("sum", ["dag_id", "task_id"], increase(c.TASK_COST, RANGE, *SELECTED))
    layout.add(
        bar_gauge(
            "Most expensive tasks",
            "What each pipeline's most expensive tasks cost over the selected range, every "
            "try and mapped instance included. Each pipeline reports its top tasks and the "
            "tasks the catalog names; the rest of its tasks are summed as (other).",
            [Query(f"topk(10, {by_task})", "{{dag_id}} · {{task_id}}")],
            currency,
            thresholds=s.steps(s.BLUE),
        ),
        s.HALF,
        s.CHART_H,
    )
    variables = [
        variable("team", "Team", (c.DAG_PAUSED, c.DATASET_PRODUCER_PAUSED)),
        variable("dag_id", "Pipeline", (c.DAG_PAUSED,), var("team")),
    ]
    return build(board, ABOUT, variables, layout)
