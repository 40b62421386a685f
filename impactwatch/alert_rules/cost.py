"""Cost rules: a run that costs far more than usual, and a cost model the AWS bill disagrees with.

PipelineCostAnomaly (the pipeline's team): the latest finished run cost more than
`cost_anomaly_factor` (3) times the median of its previous 20 runs, and at least
`cost_anomaly_min`. "Last 20 runs" is not a PromQL window, so the collector exports both sides
(`impactwatch_dag_run_last_cost_dollars`, `impactwatch_dag_run_median_cost_dollars`, the latter
from 5 earlier runs on); the alert holds until a run costs its usual again.

CostModelOff (platform): `impactwatch cost reconcile` found a DAG's actual cost per day (AWS Cost
Explorer) `cost_model_off_factor` (2) times above or below the estimate. The series' `dag_id`
becomes `pipeline`, so the router files it as a platform problem (component cost_model), not
as an incident of the pipeline's owners.
"""

from __future__ import annotations

from impactwatch.alert_rules.platform import platform_team
from impactwatch.alert_rules.promql import latest, prom_duration
from impactwatch.alert_rules.rules_model import Alert, Group, runbook_path
from impactwatch.alert_rules.settings import RuleSettings
from impactwatch.catalog.model import Catalog
from impactwatch.contract import metrics as c
from impactwatch.contract.alerts import (
    COMPONENT,
    COST,
    COST_MODEL_OFF,
    PIPELINE_COST_ANOMALY,
    PLATFORM,
    TEAM,
    WARNING,
)
from impactwatch.contract.promql import name_of, number

GROUP = "impactwatch-cost"
_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "INR": "₹"}
_PIPELINE_WORDS = '{{ $labels.dag_id | reReplaceAll "_" " " }}'


def money(template: str, currency: str) -> str:
    """Template text printing a template number as money: "$312.40", "312.40 CHF"."""
    amount = f'{{{{ {template} | printf "%.2f" }}}}'
    symbol = _SYMBOLS.get(currency.upper())
    return f"{symbol}{amount}" if symbol else f"{amount} {currency}"


def _lookup(query: str, render: str) -> str:
    """Template text running `query` (a printf format over $labels.dag_id) at alert time."""
    args = " ".join("$labels.dag_id" for _ in range(query.count("%q")))
    return f'{{{{ with printf "{query}" {args} | query }}}}{render}{{{{ end }}}}'


def cost_group(catalog: Catalog, settings: RuleSettings) -> Group:
    window = prom_duration(settings.series_gap_tolerance)
    return Group(
        GROUP,
        "Cost: a pipeline run far more expensive than its usual (median of its last 20 runs), "
        "and a cost model the AWS bill disagrees with (needs `impactwatch cost reconcile`).",
        (_anomaly(catalog, settings, window), _model_off(catalog, settings, window)),
    )


def _anomaly(catalog: Catalog, s: RuleSettings, window: str) -> Alert:
    last = latest(c.DAG_RUN_LAST_COST, c.DAG, window)
    usual = latest(c.DAG_RUN_MEDIAN_COST, c.DAG, window)
    expr = (
        f"{last}\n  > {number(s.cost_anomaly_factor)} * {usual}\n"
        f"and\n{last}\n  >= {number(s.cost_anomaly_min)}"
    )
    currency = catalog.cost.currency
    median_query = f"max({name_of(c.DAG_RUN_MEDIAN_COST)}{{dag_id=%q}})"
    ratio_query = f"max({name_of(c.DAG_RUN_LAST_COST)}{{dag_id=%q}}) / {median_query}"
    usual_text = _lookup(median_query, money(". | first | value", currency))
    ratio_text = _lookup(ratio_query, '{{ . | first | value | printf "%.1f" }}')
    return Alert(
        name=PIPELINE_COST_ANOMALY,
        expr=expr,
        severity=WARNING,
        kind=COST,
        summary=(
            f"The latest {_PIPELINE_WORDS} run cost {money('$value', currency)}, "
            f"usually {usual_text}"
        ),
        description=(
            f"Owned by {{{{ $labels.team }}}}. That is {ratio_text} times the median cost of its "
            "last 20 runs. Usual causes: more data than usual, retries, a task stuck running, "
            "a change to the pipeline or its resources. Clears when a run costs its usual again."
        ),
        runbook=runbook_path(PIPELINE_COST_ANOMALY),
        for_seconds=s.pipeline_for,
    )


def _model_off(catalog: Catalog, s: RuleSettings, window: str) -> Alert:
    ratio = latest(c.COST_MODEL_RATIO, ("dag_id",), window)
    factor = number(s.cost_model_off_factor)

    def side(value: str, direction: str) -> str:
        marked = (
            f'label_replace(\n    {value} > {factor},\n    "direction", "{direction}", "", ""\n  )'
        )
        return f'label_replace(\n  {marked},\n  "pipeline", "$1", "dag_id", "(.+)"\n)'

    sides = f"{side(ratio, 'bill_higher')}\nor\n{side(f'1 / {ratio}', 'estimate_higher')}"
    expr = "max by (pipeline, direction) (\n  " + sides.replace("\n", "\n  ") + "\n)"
    return Alert(
        name=COST_MODEL_OFF,
        expr=expr,
        severity=WARNING,
        kind=PLATFORM,
        summary=(
            'Cost model off by {{ printf "%.1f" $value }}x for {{ $labels.pipeline }}: the AWS '
            'bill is {{ if eq $labels.direction "bill_higher" }}higher{{ else }}lower{{ end }} '
            "than impactwatch's estimate"
        ),
        description=(
            "Costs shown to the business for this pipeline are off by that factor. Check the "
            "rates, pools and instance types in the catalog's cost section against what the "
            "pipeline runs on, and that only its resources carry its cost allocation tag."
        ),
        runbook=runbook_path(COST_MODEL_OFF),
        for_seconds=s.platform_for,
        labels={TEAM: platform_team(catalog, s), COMPONENT: "cost_model"},
    )
