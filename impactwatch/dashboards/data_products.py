"""The "Data products" dashboard, for stakeholders: is my data fresh, is it on time, what does
it cost. In the business's words: titles from the catalog, no Airflow terms."""

from __future__ import annotations

from grafanalib import core as g

from impactwatch.catalog.model import Catalog
from impactwatch.contract import metrics as c
from impactwatch.dashboards import links
from impactwatch.dashboards import style as s
from impactwatch.dashboards.dashboard import build, variable
from impactwatch.dashboards.panels import Layout, Query, stat, timeseries
from impactwatch.dashboards.products import Products, product_table
from impactwatch.dashboards.promql import DAY, var

ABOUT = (
    "Every data product the business relies on: fresh (green), late (amber: past its freshness "
    "limit) or stale (red: past twice its limit, or past its limit for a critical product); "
    "how well it kept its promises over the selected time range; open incidents; and what "
    "producing it costs per day. Owners and limits come from the catalog."
)


def data_products(catalog: Catalog) -> g.Dashboard:
    board = links.BOARDS[links.DATA_PRODUCTS]
    selected = (var("team"), var("tier"), var("dataset"))
    p = Products(catalog, selected)
    owner = s.link(
        "Owner: ${__field.labels.team}",
        links.panel_link(links.TEAM, team="${__field.labels.team}"),
    )
    pipeline = s.link(
        "Pipeline: ${__field.labels.dag_id}",
        links.panel_link(
            links.TEAM, team="${__field.labels.team}", dag_id="${__field.labels.dag_id}"
        ),
    )
    layout = Layout()
    layout.row("At a glance")
    layout.add(
        stat(
            "Status",
            "Each data product: Fresh (within its freshness limit), Late (past it), Stale (past "
            "twice its limit; critical products are stale as soon as they are late), Paused "
            "(its producer is paused), No update yet. Click a tile for its team or its pipeline.",
            [Query(p.labelled(p.status()), "{{title}}")],
            s.COUNT,
            thresholds=s.steps(s.GREY),
            mappings=s.value_mappings(s.PRODUCT_STATUS),
            links=[owner, pipeline],
            named=True,
        ),
        s.FULL,
        s.TILES_H,
    )
    layout.row("Data products")
    layout.add(
        product_table(
            catalog,
            selected,
            "Data products",
            "Age: time since the last successful update; Limit: how old it may get (catalog). "
            "Time fresh: share of the selected range it was within its limit. Runs on time: "
            "share of its pipeline's runs in the range that finished within their time limit. "
            "Open incidents: alerts firing now about it or its pipeline. Cost per day: its "
            "pipeline's spend per day over the range, shared evenly by the products it makes.",
        ),
        s.FULL,
        s.TABLE_H,
    )
    layout.row("Trends")
    layout.add(
        timeseries(
            "Age against its limit",
            "How old each data product is, as a share of its freshness limit: above 100% it is "
            "late, above 200% stale. Each drop is a fresh update.",
            [Query(p.labelled(p.age_share_of_limit()), "{{title}}")],
            s.SHARE,
            thresholds=s.SHARE_OF_LIMIT,
            threshold_lines=True,
        ),
        s.HALF,
        s.CHART_H,
    )
    layout.add(
        timeseries(
            "Cost per day",
            "What producing each data product cost over the trailing 24 hours, at each point in "
            "time (a pipeline's cost is shared evenly by the products it makes).",
            [Query(p.labelled(p.cost_per_day(DAY)), "{{title}}")],
            s.currency_unit(catalog.cost.currency),
            stack=True,
        ),
        s.HALF,
        s.CHART_H,
    )
    variables = [
        variable("team", "Team", (c.DATASET_PRODUCER_PAUSED,)),
        variable("tier", "Tier", (c.DATASET_PRODUCER_PAUSED,), var("team")),
        variable("dataset", "Data product", (c.DATASET_PRODUCER_PAUSED,), var("team"), var("tier")),
    ]
    return build(board, ABOUT, variables, layout)
