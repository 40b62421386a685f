"""Pipeline rules: run too long, missed deadline, failed run of a critical pipeline.

Generic rules that join each DAG's value to its threshold metric (`max_duration`, `deadline`)
rather than one rule per DAG: the collector exports thresholds only for pipelines the catalog
limits, so the join is the selection, and a new pipeline needs no new rule. The one thing the
metrics do not carry is a pipeline's tier, so the catalog's critical pipelines are embedded as a
regex matcher (`dag_id=~"a|b"`), regenerated with the catalog like everything else.

Severity ladder: warning on breach; critical past twice the limit or for a critical-tier
pipeline. A deadline has no "twice", so it is critical only for critical-tier pipelines (as the
collector counts breaches). Paused DAGs never alert; a DAG that never succeeded has no deadline
series (nothing to hold it to yet), so no deadline alert before the first run.
"""

from __future__ import annotations

from dataclasses import replace

from impactwatch.alert_rules.promql import (
    VALUE_AGE,
    current,
    latest,
    lookup_duration,
    producers_by_label,
    prom_duration,
)
from impactwatch.alert_rules.rules_model import DAG_PAUSED, Alert, Group, Record, runbook_path
from impactwatch.alert_rules.settings import RuleSettings
from impactwatch.catalog.model import Catalog
from impactwatch.contract import metrics as c
from impactwatch.contract.alerts import (
    CATALOG,
    CRITICAL,
    CRITICAL_PIPELINE_FAILED,
    DAG_ID,
    DEADLINE,
    DURATION,
    FAILURE,
    LEARNED,
    PIPELINE_MISSED_DEADLINE,
    PIPELINE_RUN_TOO_LONG,
    PRODUCERS,
    SOURCE,
    WARNING,
)
from impactwatch.contract.promql import Matcher, alternation

GROUP = "impactwatch-pipelines"
UNLESS_PAUSED = f"unless on (dag_id)\n  {DAG_PAUSED} == 1"
PRODUCTS = {PRODUCERS: producers_by_label(DAG_ID)}  # what the pipeline refreshes: the router folds


def critical_pipelines(catalog: Catalog) -> list[str]:
    return sorted(d for d, p in catalog.pipelines.items() if p.tier == "critical")


def pipelines_group(catalog: Catalog, settings: RuleSettings) -> Group:
    window = prom_duration(settings.series_gap_tolerance)
    crit = alternation(critical_pipelines(catalog))
    is_crit: Matcher = ("dag_id", "=~", crit)
    not_crit: Matcher = ("dag_id", "!~", crit)
    rules: list[Alert | Record] = [Record(DAG_PAUSED, latest(c.DAG_PAUSED, c.DAG, window))]
    rules += _duration(settings, is_crit, not_crit)
    rules += _duration(settings, is_crit, not_crit, LEARNED)
    rules += _deadline(settings, window, is_crit, not_crit)
    if crit:
        rules += _failure(settings, window, is_crit)
    return Group(
        GROUP,
        "Pipelines: runs over their duration limit, missed daily deadlines, failed runs of "
        f"critical pipelines. Critical pipelines (from the catalog): {crit or 'none'}.",
        tuple(rules),
    )


def _duration(
    settings: RuleSettings, is_crit: Matcher, not_crit: Matcher, source: str = CATALOG
) -> list[Alert]:
    """Runs over their limit: the catalog's (`source` CATALOG), or the learned one."""
    picked: Matcher = ("source", "=", LEARNED) if source == LEARNED else ("source", "!=", LEARNED)

    def over(factor: int, *matchers: Matcher) -> str:
        limit = current(c.DAG_RUN_MAX_DURATION, c.DAG, picked)
        limit = f"{factor} * {limit}" if factor != 1 else limit
        return f"{current(c.DAG_RUN_OLDEST_RUNNING, c.DAG, *matchers)}\n  > {limit}"

    critical = f"(\n  {_indent(over(2))}\nor\n  {_indent(over(1, is_crit))}\n)\n{UNLESS_PAUSED}"
    summary = (
        f"Pipeline {{{{ $labels.dag_id }}}} has been running for {VALUE_AGE} "
        f"(limit {lookup_duration(c.DAG_RUN_MAX_DURATION, 'dag_id')})"
    )
    about = (
        "Owned by {{ $labels.team }}. Every data product this pipeline refreshes will be late "
        "until the run finishes."
    )
    labels: dict[str, str] = {}
    if source == LEARNED:
        summary = (
            f"Pipeline {{{{ $labels.dag_id }}}} has been running for {VALUE_AGE}; it usually "
            f"takes {_usual_duration()} "
            f"(learned limit {lookup_duration(c.DAG_RUN_MAX_DURATION, 'dag_id')})"
        )
        about += (
            " No max_duration in the catalog: the limit is learned from its run history "
            "(add max_duration to the catalog to set one)."
        )
        labels = {SOURCE: LEARNED}
    warning = Alert(
        name=PIPELINE_RUN_TOO_LONG,
        expr=f"{over(1, not_crit)}\n{UNLESS_PAUSED}",
        severity=WARNING,
        kind=DURATION,
        summary=summary,
        description=f"{about} Escalates to critical past twice the limit.",
        runbook=runbook_path(PIPELINE_RUN_TOO_LONG),
        for_seconds=settings.pipeline_for,
        labels=labels,
        annotations=PRODUCTS,
    )
    return [
        warning,
        replace(
            warning,
            expr=critical,
            severity=CRITICAL,
            description=f"{about} Critical: past twice the limit, or a critical pipeline.",
        ),
    ]


def _deadline(
    settings: RuleSettings, window: str, is_crit: Matcher, not_crit: Matcher
) -> list[Alert]:
    def late(matcher: Matcher) -> str:
        return f"time() - {latest(c.DAG_RUN_DEADLINE, c.DAG, window, matcher)}\n  > 0"

    warning = Alert(
        name=PIPELINE_MISSED_DEADLINE,
        expr=f"{late(not_crit)}\n{UNLESS_PAUSED}",
        severity=WARNING,
        kind=DEADLINE,
        summary=(
            f"Pipeline {{{{ $labels.dag_id }}}} missed its daily deadline: no successful run, "
            f"{VALUE_AGE} late"
        ),
        description=(
            "Owned by {{ $labels.team }}. What the business expects from this pipeline by its "
            "deadline (reports, submissions, refreshed data) is late. Clears when a run succeeds."
        ),
        runbook=runbook_path(PIPELINE_MISSED_DEADLINE),
        for_seconds=settings.pipeline_for,
        annotations=PRODUCTS,
    )
    return [
        warning,
        replace(warning, expr=f"{late(is_crit)}\n{UNLESS_PAUSED}", severity=CRITICAL),
    ]


def _failure(settings: RuleSettings, window: str, is_crit: Matcher) -> list[Alert]:
    failed = latest(c.DAG_RUN_LAST_FAILURE, c.DAG, window, is_crit)
    succeeded = latest(c.DAG_RUN_LAST_SUCCESS, c.DAG, window, is_crit)
    expr = (
        f"(\n    {failed}\n  > {succeeded}\nor\n    {failed}\n  unless on (dag_id) {succeeded}\n)"
        f"\n{UNLESS_PAUSED}"
    )
    return [
        Alert(
            name=CRITICAL_PIPELINE_FAILED,
            expr=expr,
            severity=CRITICAL,
            kind=FAILURE,
            summary=(
                "Critical pipeline {{ $labels.dag_id }} failed: its latest run did not succeed"
            ),
            description=(
                "Owned by {{ $labels.team }}. The data products it refreshes stay stale until "
                "a run succeeds. Last failed run ended {{ $value | humanizeTimestamp }}."
            ),
            runbook=runbook_path(CRITICAL_PIPELINE_FAILED),
            for_seconds=settings.pipeline_for,
            annotations=PRODUCTS,
        )
    ]


def _usual_duration() -> str:
    """Template text printing the learned median duration of the alert's DAG."""
    query = f'max({c.DAG_RUN_USUAL_DURATION.name}{{dag_id=%q,quantile="0.5"}})'
    return (
        f"{{{{ with printf `{query}` $labels.dag_id | query }}}}"
        "{{ . | first | value | humanizeDuration }}{{ end }}"
    )


def _indent(text: str) -> str:
    return text.replace("\n", "\n  ")
