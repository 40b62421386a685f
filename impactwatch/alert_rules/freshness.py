"""Freshness rules: one alert per data product of the catalog, in its business words.

Why one rule per data product rather than one generic rule: the summary then carries the
catalog's title, limit, lineage and owner ("Customer risk scores are 2h 1m stale (limit
1h 30m)"), which a generic rule cannot (titles are not metric labels), and the catalog bounds the
count. Products that only Airflow declares (Asset extras, DAG tags) have no title here: one
generic rule covers them, excluding the products that have their own.

Stale means `time() - last_updated > sla`, computed by Prometheus from the collector's
timestamps, so a stalled collector never makes data look fresh. Ages and limits are read through
recording rules that bridge scrape gaps (`last_over_time`), so a collector restart neither
resolves nor re-fires an alert; a fresh update resolves it at the next evaluation. A paused
producer silences its product; no update ever recorded (before the first run) means no alert.
"""

from __future__ import annotations

import re
from dataclasses import replace

from impactwatch.alert_rules.promql import (
    VALUE_AGE,
    current,
    human_duration,
    latest,
    lookup_duration,
    lookup_time_of_day,
    lookup_value,
    producers_by_label,
    producers_of_datasets,
    prom_duration,
    template_literal,
)
from impactwatch.alert_rules.rules_model import (
    DATASET_AGE,
    DATASET_PAUSED,
    DATASET_SLA,
    Alert,
    Group,
    Record,
    dataset_runbook_path,
    runbook_path,
)
from impactwatch.alert_rules.settings import RuleSettings
from impactwatch.catalog.model import Catalog, Dataset
from impactwatch.contract import metrics as c
from impactwatch.contract.alerts import (
    BEHIND,
    CRITICAL,
    DAG_ID,
    DATA_PRODUCT_LIKELY_LATE,
    DATA_PRODUCT_STALE,
    DATASET,
    DUE_AT,
    EXPECTED_AT,
    FRESHNESS,
    LEARNED,
    PREDICTED,
    PRODUCERS,
    SOURCE,
    TASK_ID,
    WARNING,
    Severity,
)
from impactwatch.contract.promql import Matcher, alternation, eq, selector

GROUP = "impactwatch-freshness"


def freshness_group(catalog: Catalog, settings: RuleSettings) -> Group:
    window = prom_duration(settings.series_gap_tolerance)
    rules: list[Alert | Record] = [
        Record(DATASET_AGE, f"time() - {latest(c.DATASET_LAST_UPDATED, c.DS, window)}"),
        Record(DATASET_SLA, latest(c.DATASET_FRESHNESS_SLA, c.DS, window)),
        Record(DATASET_PAUSED, latest(c.DATASET_PRODUCER_PAUSED, c.DS, window)),
    ]
    own = sorted(name for name, ds in catalog.datasets.items() if ds.freshness)
    for name in own:
        rules.extend(_dataset_alerts(catalog, catalog.datasets[name], settings))
    learned = sorted(
        name for name, ds in catalog.datasets.items() if not ds.freshness and ds.produced_by
    )
    for name in learned:
        rules.extend(_learned_alerts(catalog, catalog.datasets[name], settings))
    rules.extend(_generic_alerts(sorted(own + learned), settings))
    rules.append(likely_late_alert(settings))
    return Group(
        GROUP,
        "Data-product freshness: one alert per data product of the catalog, in its words, "
        "and one for products only Airflow declares.",
        tuple(rules),
    )


def stale_expr(matcher: Matcher | None, factor: int = 1, age_only: tuple[Matcher, ...] = ()) -> str:
    """Age over `factor` x the limit, unless the producer is paused. `matcher` selects on every
    operand; `age_only` on the age alone (the joins carry the selection to the others)."""
    both = (matcher,) if matcher else ()
    age = selector(DATASET_AGE, *both, *age_only)
    limit = selector(DATASET_SLA, *both)
    limit = f"{factor} * {limit}" if factor != 1 else limit
    paused = selector(DATASET_PAUSED, *both)
    return f"{age}\n  > {limit}\nunless on (dataset)\n  {paused} == 1"


def _dataset_alerts(catalog: Catalog, ds: Dataset, settings: RuleSettings) -> list[Alert]:
    assert ds.freshness
    limit = human_duration(ds.freshness)
    title = template_literal(ds.title)
    summary = f"{title} {verb(ds.title)} {VALUE_AGE} stale (limit {limit})"
    match = eq("dataset", ds.name)
    producers = producers_of_datasets([ds.name, *catalog.upstream_of(ds.name)])

    def alert(severity: Severity, factor: int, ladder: str) -> Alert:
        return Alert(
            name=DATA_PRODUCT_STALE,
            expr=stale_expr(match, factor),
            severity=severity,
            kind=FRESHNESS,
            summary=summary,
            description=template_literal(_describe(catalog, ds, ladder)),
            runbook=dataset_runbook_path(ds.name),
            for_seconds=settings.freshness_for,
            labels={DATASET: ds.name},  # as on the series; keeps each rule distinct for lint
            annotations={PRODUCERS: producers},
        )

    if ds.tier == "critical":
        return [alert(CRITICAL, 1, "Critical-tier data product: critical from the start.")]
    escalate = f"Escalates to critical past {human_duration(2 * ds.freshness)}."
    return [
        alert(WARNING, 1, escalate),
        alert(CRITICAL, 2, f"Critical: stale for more than twice its {limit} limit."),
    ]


def _learned_alerts(catalog: Catalog, ds: Dataset, settings: RuleSettings) -> list[Alert]:
    """A data product the catalog gives no freshness: late past what its history says (the
    collector exports a learned limit once it has enough history; before that, no alert)."""
    title = template_literal(ds.title)
    usually = lookup_time_of_day(c.DATASET_USUAL_UPDATE_BY, "dataset")
    producers = producers_of_datasets([ds.name, *catalog.upstream_of(ds.name)])
    summary = f"{title} {verb(ds.title)} {VALUE_AGE} stale: usually updated by {usually}"
    learned = (
        "No freshness limit in the catalog: the limit is learned from its update history "
        "(add freshness to the catalog to set one)."
    )

    def alert(severity: Severity, factor: int, ladder: str) -> Alert:
        return Alert(
            name=DATA_PRODUCT_STALE,
            expr=stale_expr(eq("dataset", ds.name), factor),
            severity=severity,
            kind=FRESHNESS,
            summary=summary,
            description=template_literal(_describe(catalog, ds, f"{learned} {ladder}")),
            runbook=dataset_runbook_path(ds.name),
            for_seconds=settings.freshness_for,
            labels={DATASET: ds.name, SOURCE: LEARNED},
            annotations={PRODUCERS: producers},
        )

    if ds.tier == "critical":
        return [alert(CRITICAL, 1, "Critical-tier data product: critical from the start.")]
    return [
        alert(WARNING, 1, "Escalates to critical past twice its learned limit."),
        alert(CRITICAL, 2, "Critical: stale for more than twice its learned limit."),
    ]


def _generic_alerts(own: list[str], settings: RuleSettings) -> list[Alert]:
    others = ("dataset", "!~", alternation(own))
    summary = (
        f"Data product {{{{ $labels.dataset }}}} is {VALUE_AGE} stale "
        f"(limit {lookup_duration(DATASET_SLA, 'dataset')})"
    )
    declared = (
        "Owned by {{ $labels.team }}, {{ $labels.tier }} tier. It is declared in Airflow "
        "(an Asset's extra or a DAG tag), not in the catalog file: add it there to get its "
        "title, lineage and runbook in this alert."
    )
    warning = stale_expr(None, age_only=(others, ("tier", "!=", "critical")))
    critical = _either(
        stale_expr(None, 2, age_only=(others,)),
        stale_expr(None, age_only=(others, eq("tier", "critical"))),
    )
    first = Alert(
        name=DATA_PRODUCT_STALE,
        expr=warning,
        severity=WARNING,
        kind=FRESHNESS,
        summary=summary,
        description=f"{declared} Escalates to critical past twice its limit.",
        runbook=runbook_path(DATA_PRODUCT_STALE),
        for_seconds=settings.freshness_for,
        annotations={PRODUCERS: producers_by_label(DATASET)},
    )
    return [
        first,
        replace(
            first,
            expr=critical,
            severity=CRITICAL,
            description=f"{declared} Critical: critical tier, or stale past twice its limit.",
        ),
    ]


def _indent(text: str, by: str = "  ") -> str:
    return "\n".join(by + line for line in text.splitlines())


def _either(first: str, second: str) -> str:
    return f"(\n{_indent(first)}\n)\nor\n(\n{_indent(second)}\n)"


def verb(title: str) -> str:
    """ "are" for titles that read as plural ("Customer risk scores"), else "is".

    A heuristic on the last word, ignoring a trailing parenthesis ("Regulatory submission
    (daily)" -> "is"); catalogs can always reword a title that reads wrong.
    """
    words = re.sub(r"\([^)]*\)", "", title).split()
    last = words[-1].lower() if words else ""
    return "are" if last.endswith("s") and not last.endswith(("ss", "us", "is")) else "is"


def producer_phrase(catalog: Catalog, ds: Dataset) -> str:
    p = ds.produced_by
    if p is None:
        return "nothing the catalog names (add produced_by)"
    if p.asset_uri is not None:
        return f"events of the Airflow Asset {p.asset_uri}"
    if p.task_id is not None:
        return f"task {p.task_id} of pipeline {p.dag_id}"
    return f"each successful run of pipeline {p.dag_id}"


def _titles(catalog: Catalog, names: list[str]) -> str:
    titles = [catalog.datasets[n].title if n in catalog.datasets else n for n in names]
    if len(titles) <= 1:
        return "".join(titles)
    return ", ".join(titles[:-1]) + " and " + titles[-1]


def _describe(catalog: Catalog, ds: Dataset, ladder: str) -> str:
    team = catalog.team_of_dataset(ds.name)
    limit = (
        f"must be refreshed at least every {human_duration(ds.freshness)}."
        if ds.freshness
        else "usually refreshed on a schedule learned from its history."
    )
    parts = [
        f"Owned by {team}, {ds.tier} tier; {limit}",
        f"Updated by {producer_phrase(catalog, ds)}.",
    ]
    if ds.upstream:
        built_from = _titles(catalog, ds.upstream)
        those = "those are" if len(ds.upstream) > 1 else "it is"
        parts.append(f"Built from {built_from}: if {those} stale too, start there.")
    downstream = catalog.downstream_of(ds.name)
    if downstream:
        parts.append(f"Also out of date until it is refreshed: {_titles(catalog, downstream)}.")
    if ds.description:
        parts.append(ds.description.strip())
    parts.append(ladder)
    return " ".join(parts)


def likely_late_expr(margin: float) -> str:
    """The expected next update (from the pace of the run that makes it) past when the
    product turns late by more than `margin`, unless its producer is paused."""
    expected = current(c.DATASET_EXPECTED_UPDATE, (*c.DS, DAG_ID))
    due = current(c.DATASET_UPDATE_DUE, (DATASET,))
    paused = selector(DATASET_PAUSED)
    return (
        f"{expected}\n  - on (dataset) group_left ()\n  {due}\n  > {margin:g}\n"
        f"unless on (dataset)\n  {paused} == 1"
    )


def likely_late_alert(settings: RuleSettings) -> Alert:
    """A predicted miss: one rule for every data product (the collector exports an expected
    update only for those it can predict). Its annotations carry the task, times and lag the
    router words ("will likely be ~40 min late: ... expected 07:40, limit 07:00"); the task is
    not a label, so the alert stays one as the run moves from task to task."""
    name = c.DATASET_EXPECTED_UPDATE.family
    return Alert(
        name=DATA_PRODUCT_LIKELY_LATE,
        expr=likely_late_expr(settings.predicted_margin),
        severity=WARNING,
        kind=PREDICTED,
        summary=(
            "{{ $labels.dataset }} will likely be ~{{ $value | humanizeDuration }} late: "
            "{{ $labels.dag_id }} is behind its usual pace"
        ),
        description=(
            "Owned by {{ $labels.team }}. Not late yet: the run that makes it is behind its "
            "usual pace, learned from history. Becomes the stale data product's incident if "
            "the breach comes; resolves (caught up) if the run recovers."
        ),
        runbook=runbook_path(DATA_PRODUCT_LIKELY_LATE),
        for_seconds=settings.freshness_for,
        annotations={
            PRODUCERS: producers_by_label(DATASET),
            EXPECTED_AT: lookup_value(f"max({name}{{dataset=%q}})", DATASET),
            DUE_AT: lookup_value(f"max({c.DATASET_UPDATE_DUE.family}{{dataset=%q}})", DATASET),
            TASK_ID: (
                f'{{{{ with printf "max by (task_id) ({name}{{dataset=%q}})" $labels.dataset'
                ' | query }}{{ . | first | label "task_id" }}{{ end }}'
            ),
            BEHIND: lookup_value(f"max({c.DAG_RUN_BEHIND.family}{{dag_id=%q}})", DAG_ID),
        },
    )
