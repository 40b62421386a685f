"""Panels as values: small functions from queries and house style to grafanalib panels.

Each builder takes `Query` objects (PromQL + legend) and returns a grafanalib panel whose every
target names the provisioned data source by UID. `Layout` places panels on Grafana's 24-column
grid, left to right, a new line when a panel does not fit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from string import ascii_uppercase
from typing import Any

import attr
from grafanalib import core as g

from impactwatch.dashboards import style as s


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


@attr.s
class PromTarget(g.Target):
    """A Prometheus target in Grafana 10/11's shape (grafanalib's adds legacy fields)."""

    table = attr.ib(default=False, validator=attr.validators.instance_of(bool))

    def to_json_data(self) -> dict[str, Any]:
        return {
            "datasource": s.DATASOURCE,
            "editorMode": "code",
            "expr": self.expr,
            "format": "table" if self.table else "time_series",
            "instant": self.instant,
            "legendFormat": self.legendFormat or "__auto",
            "range": not self.instant,
            "refId": self.refId,
        }


def targets(queries: Sequence[Query], *, instant: bool, table: bool = False) -> list[PromTarget]:
    return [
        PromTarget(expr=q.expr, legendFormat=q.legend, refId=ref, instant=instant, table=table)
        for q, ref in zip(queries, ascii_uppercase, strict=False)
    ]


def _common(title: str, about: str, thresholds: dict[str, Any]) -> dict[str, Any]:
    """What every panel has: title, description, data source, min step, thresholds."""
    return {
        "title": title,
        "description": about,
        "dataSource": s.DATASOURCE,
        "interval": s.MIN_INTERVAL,
        "maxDataPoints": None,
        "thresholdType": thresholds["mode"],
        "thresholds": thresholds["steps"],
    }


def timeseries(
    title: str,
    about: str,
    queries: Sequence[Query],
    unit: str,
    *,
    thresholds: dict[str, Any] | None = None,
    threshold_lines: bool = False,
    stack: bool = False,
    bars: bool = False,
    minimum: int | None = 0,
) -> g.TimeSeries:
    """A time series chart; `threshold_lines` draws the thresholds as dashed lines."""
    return g.TimeSeries(
        **_common(title, about, thresholds or s.steps(s.GREEN)),
        targets=targets(queries, instant=False),
        unit=unit,
        valueMin=minimum,
        drawStyle="bars" if bars else "line",
        fillOpacity=60 if bars else 10,
        lineWidth=1,
        showPoints="never",
        spanNulls=True,
        stacking={"mode": "normal", "group": "A"} if stack else {"mode": "none", "group": "A"},
        thresholdsStyleMode="dashed" if threshold_lines else "off",
        legendDisplayMode="list",
        tooltipMode="multi",
        tooltipSort="desc",
    )


def stat(
    title: str,
    about: str,
    queries: Sequence[Query],
    unit: str,
    *,
    thresholds: dict[str, Any],
    mappings: list[dict[str, Any]] | None = None,
    links: Sequence[dict[str, Any]] = (),
    no_value: str | None = None,
    named: bool = False,
    decimals: int | None = None,
) -> g.Stat:
    """One value per series, coloured by thresholds (or mappings); `named` shows series names."""
    return g.Stat(
        **_common(title, about, thresholds),
        targets=targets(queries, instant=True),
        color={"mode": "thresholds"},
        format=unit,
        mappings=mappings or [],
        decimals=decimals,
        noValue=no_value,
        colorMode="background",
        graphMode="none",
        reduceCalc="lastNotNull",
        textMode="value_and_name" if named else "value",
        extraJson={"fieldConfig": {"defaults": {"links": list(links)}}},
    )


@attr.s
class BarGauge(g.Panel):
    """A bar gauge in Grafana 8+'s model (grafanalib 0.7's BarGauge writes the 6.x one)."""

    unit = attr.ib(default=s.COUNT)
    minimum = attr.ib(default=0)
    maximum = attr.ib(default=None)
    mappings = attr.ib(factory=list)
    links = attr.ib(factory=list)

    def to_json_data(self) -> dict[str, Any]:
        return self.panel_json(
            {
                "fieldConfig": {
                    "defaults": {
                        "unit": self.unit,
                        "min": self.minimum,
                        "max": self.maximum,
                        "mappings": self.mappings,
                        "links": self.links,
                        "color": {"mode": "thresholds"},
                    },
                    "overrides": [],
                },
                "options": {
                    "displayMode": "gradient",
                    "orientation": "horizontal",
                    "showUnfilled": True,
                    "valueMode": "color",
                    "namePlacement": "left",
                    "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                },
                "type": "bargauge",
            }
        )


def bar_gauge(
    title: str,
    about: str,
    queries: Sequence[Query],
    unit: str,
    *,
    thresholds: dict[str, Any],
    maximum: float | None = None,
    links: Sequence[dict[str, Any]] = (),
) -> BarGauge:
    """Bars side by side, one per series: the biggest, the slowest, the most expensive."""
    return BarGauge(
        **_common(title, about, thresholds),
        targets=targets(queries, instant=True),
        unit=unit,
        maximum=maximum,
        links=list(links),
    )


@dataclass(frozen=True)
class Label:
    """A label column of a table: a metric label shown (or hidden) under a header."""

    field: str
    header: str
    hidden: bool = False
    links: tuple[dict[str, Any], ...] = ()
    width: int | None = None


@dataclass(frozen=True)
class Column:
    """A value column of a table: one instant query, its unit and how its cells look."""

    header: str
    expr: str
    unit: str = s.COUNT
    cell: str = "auto"
    thresholds: dict[str, Any] | None = None
    mappings: list[dict[str, Any]] = field(default_factory=list)
    decimals: int | None = None
    minimum: float | None = None
    maximum: float | None = None


def table(
    title: str,
    about: str,
    labels: Sequence[Label],
    columns: Sequence[Column],
    *,
    sort_by: str | None = None,
) -> g.Table:
    """One row per label set: each column an instant query, merged on the shared labels (every
    column's query must return the same labels). Columns appear labels first, then values."""
    queries = [Query(c.expr) for c in columns]
    value_fields = [f"Value #{ref}" for ref, _ in zip(ascii_uppercase, columns, strict=False)]
    overrides = [_label_override(lab) for lab in labels]
    overrides += [_column_override(name, c) for name, c in zip(value_fields, columns, strict=True)]
    order = [lab.field for lab in labels] + value_fields
    return g.Table(
        **_common(title, about, s.steps(s.GREEN)),
        targets=targets(queries, instant=True, table=True),
        overrides=overrides,
        filterable=False,
        sortBy=[g.TableSortByField(displayName=sort_by, desc=True)] if sort_by else [],
        transformations=[
            {"id": "merge", "options": {}},
            {
                "id": "organize",
                "options": {
                    "excludeByName": {"Time": True},
                    "indexByName": {name: i for i, name in enumerate(order)},
                    "renameByName": {},
                },
            },
        ],
    )


def matrix(title: str, about: str, query: Query, rows: str, columns: str, unit: str) -> g.Table:
    """A heatmap as a table: one instant query whose series carry the labels `rows` and
    `columns`, laid out as a grid (Grafana's "grouping to matrix"), each cell coloured on one
    green-yellow-red scale by its value."""
    return g.Table(
        **_common(title, about, s.steps(s.GREEN)),
        targets=targets([query], instant=True, table=True),
        filterable=False,
        transformations=[
            {
                "id": "groupingToMatrix",
                "options": {
                    "rowField": rows,
                    "columnField": columns,
                    "valueField": "Value",
                    "emptyValue": "zero",
                },
            },
            {"id": "sortBy", "options": {"sort": [{"field": f"{rows}\\{columns}"}]}},
        ],
        extraJson={
            "fieldConfig": {
                "defaults": {
                    "unit": unit,
                    "decimals": 1,
                    "min": 0,
                    "color": {"mode": "continuous-GrYlRd"},
                    "custom": {"cellOptions": s.cell("color-background"), "align": "center"},
                },
                "overrides": [s.override(f"{rows}\\{columns}", custom__cellOptions=s.cell("auto"))],
            }
        },
    )


def _label_override(lab: Label) -> dict[str, Any]:
    props: dict[str, Any] = {"displayName": lab.header}
    if lab.hidden:
        props["custom__hidden"] = True
    if lab.links:
        props["links"] = list(lab.links)
    if lab.width:
        props["custom__width"] = lab.width
    return s.override(lab.field, **props)


def _column_override(name: str, c: Column) -> dict[str, Any]:
    props: dict[str, Any] = {"displayName": c.header, "unit": c.unit}
    props["custom__cellOptions"] = s.cell(c.cell)
    if c.thresholds is not None:
        props["thresholds"] = c.thresholds
        props["color"] = {"mode": "thresholds"}
    if c.mappings:
        props["mappings"] = c.mappings
    if c.decimals is not None:
        props["decimals"] = c.decimals
    if c.minimum is not None:
        props["min"] = c.minimum
    if c.maximum is not None:
        props["max"] = c.maximum
    return s.override(name, **props)


class Layout:
    """Places panels on the grid in reading order; `row` starts a titled section."""

    def __init__(self) -> None:
        self.panels: list[g.Panel] = []
        self._x = 0
        self._y = 0
        self._line = 0

    def _newline(self) -> None:
        self._y += self._line
        self._x = self._line = 0

    def row(self, title: str) -> Layout:
        self._newline()
        pos = g.GridPos(h=s.ROW_H, w=s.WIDTH, x=0, y=self._y)
        self.panels.append(g.RowPanel(title=title, gridPos=pos))
        self._y += s.ROW_H
        return self

    def add(self, panel: g.Panel, width: int, height: int) -> Layout:
        if self._x + width > s.WIDTH:
            self._newline()
        pos = g.GridPos(h=height, w=width, x=self._x, y=self._y)
        self.panels.append(attr.evolve(panel, gridPos=pos))
        self._x += width
        self._line = max(self._line, height)
        return self
