"""A whole dashboard: its stable UID and title, its variables, its panels and the links between
dashboards, in the JSON model of Grafana 10 and 11 (see `style.SCHEMA_VERSION`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attr
from grafanalib import core as g

from impactwatch.contract.metrics import MetricSpec
from impactwatch.contract.promql import Matcher, alternation, quote, selector
from impactwatch.dashboards import style as s
from impactwatch.dashboards.links import Board
from impactwatch.dashboards.panels import Layout


@attr.s
class Variable(g.Template):
    """A query variable in today's model: multi-select with "All" (as `.*`, which also matches
    series whose label is empty) selected by default."""

    def to_json_data(self) -> dict[str, Any]:
        data = super().to_json_data()
        for legacy in ("useTags", "tagsQuery", "tagValuesQuery", "auto", "auto_min", "auto_count"):
            data.pop(legacy, None)
        data["definition"] = self.query
        data["current"] = {"selected": True, "text": ["All"], "value": ["$__all"]}
        return data


def variable(
    name: str, label: str, metrics: tuple[MetricSpec, ...], *matchers: Matcher
) -> Variable:
    """`name` takes the values of the label of the same name on `metrics` (filtered by earlier
    variables through `matchers`), refreshed when the time range changes."""
    if len(metrics) == 1:
        series = selector(metrics[0], *matchers)
    else:
        names = ("__name__", "=~", alternation(m.name for m in metrics))
        series = "{" + ", ".join(f"{k}{op}{quote(v)}" for k, op, v in (names, *matchers)) + "}"
    return Variable(
        name=name,
        label=label,
        query=f"label_values({series}, {name})",
        dataSource=s.DATASOURCE,
        includeAll=True,
        multi=True,
        allValue=".*",
        refresh=g.REFRESH_ON_TIME_RANGE_CHANGE,
        sort=g.SORT_ALPHA_ASC,
        regex="",
    )


def build(board: Board, about: str, variables: Sequence[Variable], layout: Layout) -> g.Dashboard:
    return g.Dashboard(
        title=board.title,
        uid=board.uid,
        description=about,
        tags=list(s.TAGS),
        timezone="browser",
        refresh=s.REFRESH,
        schemaVersion=s.SCHEMA_VERSION,
        graphTooltip=g.GRAPH_TOOLTIP_MODE_SHARED_CROSSHAIR,
        editable=True,
        time=g.Time(*s.DEFAULT_RANGE),
        timePicker=g.TimePicker(refreshIntervals=list(s.REFRESH_INTERVALS), timeOptions=[]),
        templating=g.Templating(list=list(variables)),
        links=[
            g.DashboardLink(
                title="impactwatch",
                type="dashboards",
                tags=list(s.TAGS),
                asDropdown=False,
                keepTime=True,
                includeVars=False,
            )
        ],
        panels=layout.panels,
    ).auto_panel_ids()
