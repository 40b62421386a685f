"""Data products in PromQL: status, age against limit, SLA compliance, open incidents, cost.

Every expression here yields one series per data product labelled `dataset`, `team`, `tier`
(then `CatalogLabels` adds `title` and `dag_id`), so a table's columns merge into one row per
product. Ages are computed by Prometheus from the collector's timestamps (`time() - last
update`), so a stalled collector never makes data look fresh.

Status, per data product (the severity ladder of the alerts, in colours):
  fresh  (0) age within its limit;
  late   (1) past its limit;
  stale  (2) past twice its limit, or past its limit for a critical-tier product;
  paused (3) its producer is paused (no alert holds it to its limit);
  -1 no update recorded yet; 4 updated but no freshness limit in the catalog.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from grafanalib import core as g

from impactwatch.catalog.model import Catalog
from impactwatch.contract import metrics as c
from impactwatch.contract.alerts import (
    ALERTNAME,
    CRITICAL,
    DAG_ID,
    DATASET,
    DURATION,
    KIND,
    PLATFORM,
    SEVERITY,
    WARNING,
)
from impactwatch.contract.promql import Matcher, agg, alternation, eq, increase, selector
from impactwatch.dashboards import links
from impactwatch.dashboards import style as s
from impactwatch.dashboards.panels import Column, Label, table
from impactwatch.dashboards.promql import INTERVAL, RANGE, CatalogLabels, per_day, with_fill

KEYS = c.DS  # dataset, team, tier: the labels of every data-product series
ALERTS = "ALERTS"  # Prometheus's own series of pending and firing alerts
FIRING = ("alertstate", "=", "firing")


def firing(*matchers: Matcher) -> str:
    return selector(ALERTS, FIRING, *matchers)


@dataclass(frozen=True)
class Products:
    """PromQL for the data products selected by `matchers` (dashboard variables)."""

    catalog: Catalog
    matchers: tuple[Matcher, ...]

    @property
    def labels(self) -> CatalogLabels:
        return CatalogLabels.of(self.catalog)

    def critical_pipelines(self) -> str:
        return alternation(d for d, p in self.catalog.pipelines.items() if p.tier == "critical")

    # -- building blocks (one series per product, labelled KEYS) -------------------------------
    def universe(self, *, selected: bool = True) -> str:
        """Every data product the collector exports (selected by the variables, or all)."""
        matchers = self.matchers if selected else ()
        return agg("group", KEYS, selector(c.DATASET_PRODUCER_PAUSED, *matchers))

    def limit(self) -> str:
        return agg("max", KEYS, selector(c.DATASET_FRESHNESS_SLA, *self.matchers))

    def last_update(self) -> str:
        return agg("max", KEYS, selector(c.DATASET_LAST_UPDATED, *self.matchers))

    def age(self) -> str:
        return f"time() - {self.last_update()}"

    def stale_limit(self) -> str:
        """Twice the limit; the limit itself for critical-tier products."""
        others = selector(c.DATASET_FRESHNESS_SLA, *self.matchers, ("tier", "!=", "critical"))
        critical = selector(c.DATASET_FRESHNESS_SLA, *self.matchers, eq("tier", "critical"))
        return agg("max", KEYS, f"2 * {others} or {critical}")

    def paused(self) -> str:
        return f"({agg('max', KEYS, selector(c.DATASET_PRODUCER_PAUSED, *self.matchers))} == 1)"

    # -- what the panels show ------------------------------------------------------------------
    def status(self) -> str:
        age, limit, last = self.age(), self.limit(), self.last_update()
        return (
            f"(\n  ({age} > bool {limit})\n"
            f"  + ({age} > bool {self.stale_limit()})\n"
            f"  unless on (dataset) {self.paused()}\n)\n"
            f"or {s.STATUS_PAUSED} * {self.paused()}\n"
            f"or ({limit} unless on (dataset) {last}) * 0 {s.STATUS_NO_UPDATE:+d}\n"
            f"or ({last} unless on (dataset) {limit}) * 0 + {s.STATUS_NO_LIMIT}"
        )

    def age_share_of_limit(self) -> str:
        return f"({self.age()})\n/\n{self.limit()}"

    def share_of_time_fresh(self) -> str:
        """Share of the range during which the product was within its limit."""
        inside = f"({self.age()}) <= bool {self.limit()}"
        return f"avg_over_time(\n  ({inside})[{RANGE}:{INTERVAL}]\n)"

    def _per_product(self, by_dag: str) -> str:
        """A per-pipeline value given to each data product the pipeline produces."""
        products = self.labels.with_dag(self.universe())
        joined = f"{products}\n* on (dag_id) group_left () (\n{by_dag}\n)"
        return agg("max", KEYS, joined)

    def share_of_runs_on_time(self) -> str:
        """Share of the producing pipeline's runs finished in the range within its max duration.
        A breached run is counted once: at `warning` (its first severity), or at `critical` for
        a critical-tier pipeline, which starts there."""
        finished = agg("sum", ["dag_id"], increase(c.DAG_RUN_DURATION, RANGE, suffix="count"))
        kind = eq(KIND, DURATION)
        warned = increase(c.SLA_BREACHES, RANGE, kind, eq(SEVERITY, WARNING))
        critical = increase(
            c.SLA_BREACHES,
            RANGE,
            kind,
            eq(SEVERITY, CRITICAL),
            ("dag_id", "=~", self.critical_pipelines()),
        )
        breached = (
            f"{agg('sum', ['dag_id'], warned)}\nor {agg('sum', ['dag_id'], critical)}"
            f"\nor {finished} * 0"
        )
        on_time = f"clamp_min(1 - (\n{breached}\n) / ({finished} > 0), 0)"
        return self._per_product(on_time)

    def cost_per_day(self, window: str = RANGE) -> str:
        """The producing pipeline's spend per day, shared evenly by the products it produces:
        averaged over the dashboard's range, or (window="1d") the trailing day at each point."""
        spend = agg("sum", ["dag_id"], increase(c.DAG_RUN_COST, window, suffix="sum"))
        daily = per_day(spend) if window == RANGE else spend
        shares = agg("count", ["dag_id"], self.labels.with_dag(self.universe(selected=False)))
        return self._per_product(f"(\n{daily}\n)\n/ on (dag_id) {shares}")

    def open_incidents(self) -> str:
        """Firing alerts about the product (freshness) or its producing pipeline (duration,
        deadline, failure); several severities of one alert count once."""
        about_product = firing((DATASET, "!=", ""))
        about_pipeline = firing((DAG_ID, "!=", ""), (KIND, "!=", PLATFORM))
        own = agg("count", [DATASET], agg("count", [DATASET, ALERTNAME], about_product))
        pipeline = agg("count", [DAG_ID], agg("count", [DAG_ID, ALERTNAME], about_pipeline))
        universe = self.universe()
        mine = f"{universe} * on (dataset) group_left () {own}"
        theirs = f"{self.labels.with_dag(universe)} * on (dag_id) group_left () {pipeline}"
        return with_fill(agg("sum", KEYS, f"(\n{mine}\n)\nor\n(\n{theirs}\n)"), universe)

    def labelled(self, expr: str) -> str:
        return self.labels.label(expr)


def product_table(catalog: Catalog, matchers: Sequence[Matcher], title: str, about: str) -> g.Table:
    """One row per data product: status, age against limit, SLA compliance over the range, open
    incidents and cost; the title links to its owner's team dashboard and its pipeline."""
    p = Products(catalog, tuple(matchers))
    currency = s.currency_unit(catalog.cost.currency)
    team_link = s.link(
        "Owner: ${__data.fields.team}",
        links.panel_link(links.TEAM, team="${__data.fields.team}"),
    )
    pipeline_link = s.link(
        "Pipeline: ${__data.fields.dag_id}",
        links.panel_link(
            links.TEAM, team="${__data.fields.team}", dag_id="${__data.fields.dag_id}"
        ),
    )
    labels = [
        Label("title", "Data product", links=(team_link, pipeline_link), width=240),
        Label("team", "Team", links=(team_link,)),
        Label("tier", "Tier"),
        Label("dag_id", "Pipeline", links=(pipeline_link,)),
        Label("dataset", "Name", hidden=True),
    ]
    mapping = s.value_mappings(s.PRODUCT_STATUS)
    columns = [
        Column("Status", p.labelled(p.status()), cell="color-background", mappings=mapping),
        Column("Age", p.labelled(p.age()), unit=s.SECONDS),
        Column("Limit", p.labelled(p.limit()), unit=s.SECONDS),
        Column(
            "Time fresh",
            p.labelled(p.share_of_time_fresh()),
            unit=s.SHARE,
            cell="gauge",
            thresholds=s.COMPLIANCE,
            minimum=0,
            maximum=1,
        ),
        Column(
            "Runs on time",
            p.labelled(p.share_of_runs_on_time()),
            unit=s.SHARE,
            cell="gauge",
            thresholds=s.COMPLIANCE,
            minimum=0,
            maximum=1,
        ),
        Column(
            "Open incidents",
            p.labelled(p.open_incidents()),
            cell="color-background",
            thresholds=s.ANY_IS_BAD,
            decimals=0,
        ),
        Column("Cost per day", p.labelled(p.cost_per_day()), unit=currency, decimals=2),
    ]
    return table(title, about, labels, columns, sort_by="Status")
