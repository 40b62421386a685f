"""Checks a validated model cannot make alone: references between entries, lineage cycles,
escalation order and, when given, DAG ids that Airflow does not know.

Pure: each finding carries the location path in the catalog (as pydantic reports it), and the
loader turns that into file:line.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass

from impactwatch.catalog.durations import format_duration
from impactwatch.catalog.model import Catalog

Loc = tuple[str | int, ...]

_KINDS = {"teams": "team", "datasets": "dataset", "pipelines": "pipeline"}
_AIRFLOW_ID = re.compile(r"[\w.-]+")


@dataclass(frozen=True)
class Finding:
    """One problem found in a catalog, at `loc` (e.g. ("datasets", "x", "upstream", 0))."""

    loc: Loc
    message: str
    fix: str


def subject(loc: Loc) -> str:
    """How to name the place `loc` points at: ("datasets", "x", "freshness") ->
    "dataset 'x': freshness"; ("cost", "rates", "cpu_hour") -> "cost.rates.cpu_hour"."""
    head, rest = "", loc
    if len(loc) >= 2 and loc[0] in _KINDS:
        head, rest = f"{_KINDS[str(loc[0])]} {loc[1]!r}", loc[2:]
    path = ""
    for part in rest:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    if head and path:
        return f"{head}: {path}"
    return head or path


def close_match_fix(value: str, known: Collection[str], what: str, add_hint: str) -> str:
    """ "did you mean 'risk'? …" when something is close, else the list to pick from."""
    choices = ", ".join(known) if known else "(none yet)"
    close = difflib.get_close_matches(value, list(known), n=1)
    if close:
        return f"did you mean {close[0]!r}? Known {what}: {choices} ({add_hint})"
    return f"use one of: {choices} ({add_hint})"


def _finding(loc: Loc, message: str, fix: str) -> Finding:
    """A finding whose message starts with the entry it is about ("dataset 'x': ...")."""
    head = subject(loc[:2]) if loc[0] in _KINDS else str(loc[0])
    return Finding(loc, f"{head}: {message}", fix)


def semantic_findings(
    catalog: Catalog, airflow_dag_ids: Collection[str] | None = None
) -> list[Finding]:
    """Every cross-reference problem in `catalog`; with `airflow_dag_ids`, unknown DAGs too."""
    findings = [
        *_team_references(catalog),
        *_upstream_references(catalog),
        *_upstream_cycles(catalog),
        *_escalation_steps(catalog),
        *_cost_references(catalog),
    ]
    if airflow_dag_ids is not None:
        findings.extend(_airflow_dags(catalog, airflow_dag_ids))
    return findings


def _team_references(catalog: Catalog) -> Iterator[Finding]:
    teams = list(catalog.teams)
    if not teams:  # no teams declared: any name is a label, nothing to route yet
        return

    def fix(team: str) -> str:
        return close_match_fix(team, teams, "teams", "or add it under teams:")

    for name, dataset in catalog.datasets.items():
        if dataset.team is not None and dataset.team not in catalog.teams:
            yield _finding(
                ("datasets", name, "team"), f"unknown team {dataset.team!r}", fix(dataset.team)
            )
    for dag_id, pipeline in catalog.pipelines.items():
        if pipeline.team is not None and pipeline.team not in catalog.teams:
            yield _finding(
                ("pipelines", dag_id, "team"),
                f"unknown team {pipeline.team!r}",
                fix(pipeline.team),
            )
    default = catalog.defaults.team
    written = "team" in catalog.defaults.model_fields_set
    if written and default not in catalog.teams:
        yield _finding(("defaults", "team"), f"unknown team {default!r}", fix(default))


def unowned_note(catalog: Catalog) -> str | None:
    """What happens to things the catalog leaves without a team, when it names no default team
    that exists (not a problem: such alerts still reach someone; see README "The catalog")."""
    default = catalog.defaults.team
    if not catalog.teams or default in catalog.teams:
        return None  # (no teams: every alert goes to the fallback channel anyway)
    return (
        f"no defaults.team: DAGs and data products without a team alert as team {default!r}, "
        "which the router posts to its fallback channel (IMPACTWATCH_ROUTER_FALLBACK_CHANNEL); "
        "add `defaults: {team: <team>}` to choose who owns them"
    )


def _upstream_references(catalog: Catalog) -> Iterator[Finding]:
    known = list(catalog.datasets)
    for name, dataset in catalog.datasets.items():
        for index, up in enumerate(dataset.upstream):
            if up not in catalog.datasets:
                yield _finding(
                    ("datasets", name, "upstream", index),
                    f"unknown upstream data product {up!r}",
                    close_match_fix(up, known, "data products", "or add it under datasets:"),
                )


def _upstream_cycles(catalog: Catalog) -> Iterator[Finding]:
    graph = {
        name: [up for up in d.upstream if up in catalog.datasets]
        for name, d in catalog.datasets.items()
    }
    seen_cycles: set[tuple[str, ...]] = set()
    done: set[str] = set()

    def visit(name: str, stack: list[str]) -> Iterator[list[str]]:
        stack.append(name)
        for up in graph[name]:
            if up in stack:
                yield [*stack[stack.index(up) :], up]
            elif up not in done:
                yield from visit(up, stack)
        stack.pop()
        done.add(name)

    for start in sorted(graph):
        if start in done:
            continue
        for cycle in visit(start, []):
            ring = cycle[:-1]
            first = ring.index(min(ring))
            ring = ring[first:] + ring[:first]
            if tuple(ring) in seen_cycles:
                continue
            seen_cycles.add(tuple(ring))
            path = " -> ".join([*ring, ring[0]])
            nxt = ring[1] if len(ring) > 1 else ring[0]
            index = catalog.datasets[ring[0]].upstream.index(nxt)
            yield _finding(
                ("datasets", ring[0], "upstream", index),
                f"upstream cycle: {path}",
                "remove one of these upstream links; lineage must flow one way",
            )


def _escalation_steps(catalog: Catalog) -> Iterator[Finding]:
    for name, team in catalog.teams.items():
        previous = 0.0
        for index, step in enumerate(team.escalation):
            if step.channel is None and step.mention is None:
                yield _finding(
                    ("teams", name, "escalation", index),
                    f"escalation step {index + 1} neither posts nor mentions anyone",
                    'add channel: "#data-incidents" and/or mention: "@team-oncall"',
                )
            if step.after < previous:
                yield _finding(
                    ("teams", name, "escalation", index, "after"),
                    f"escalation step {index + 1} fires after {format_duration(step.after)}, "
                    f"before the step above it ({format_duration(previous)})",
                    "order the steps by `after`, shortest first",
                )
            previous = max(previous, step.after)


def _cost_references(catalog: Catalog) -> Iterator[Finding]:
    """Rates naming an instance type the catalog does not price; task keys not dag.task."""
    cost = catalog.cost
    known = list(cost.instance_types)
    for section, choices in (("pool_rates", cost.pool_rates), ("queue_rates", cost.queue_rates)):
        for name, choice in choices.items():
            kind = choice.instance_type
            if kind is not None and kind not in cost.instance_types:
                loc: Loc = ("cost", section, name, "instance_type")
                yield Finding(
                    loc,
                    f"{subject(loc)}: instance type {kind!r} has no price",
                    close_match_fix(
                        kind,
                        known,
                        "instance types",
                        f"or add `{kind}: <hourly price>` under cost.instance_types",
                    ),
                )
    for key in cost.tasks:
        dag_id, dot, task_id = key.partition(".")
        if not (dot and _AIRFLOW_ID.fullmatch(dag_id) and _AIRFLOW_ID.fullmatch(task_id)):
            loc = ("cost", "tasks", key)
            yield Finding(
                loc,
                f"{subject(loc)}: {key!r} does not name a task",
                "write the key as dag_id.task_id, e.g. nightly_heavy_etl.transform_ledger",
            )


def _airflow_dags(catalog: Catalog, dag_ids: Collection[str]) -> Iterator[Finding]:
    known = sorted(dag_ids)

    def fix(dag_id: str) -> str:
        if not known:
            return "Airflow lists no DAGs yet: has the scheduler parsed the DAG folder?"
        close = difflib.get_close_matches(dag_id, known, n=1)
        if close:
            return f"did you mean {close[0]!r}?"
        return f"check the DAG id; Airflow knows {len(known)} DAG(s), e.g. {', '.join(known[:5])}"

    for dag_id in catalog.pipelines:
        if dag_id not in dag_ids:
            yield _finding(("pipelines", dag_id), f"DAG {dag_id!r} is not in Airflow", fix(dag_id))
    for name, dataset in catalog.datasets.items():
        producer = dataset.produced_by
        if producer is not None and producer.dag_id is not None and producer.dag_id not in dag_ids:
            yield _finding(
                ("datasets", name, "produced_by"),
                f"produced by DAG {producer.dag_id!r}, which is not in Airflow",
                fix(producer.dag_id),
            )
