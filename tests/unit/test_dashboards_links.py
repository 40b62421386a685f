"""Dashboard URLs the router builds, and the PromQL helpers the panels are made of."""

from __future__ import annotations

from typing import get_args

import pytest

from impactwatch.alert_rules.platform import platform_group
from impactwatch.alert_rules.settings import RuleSettings
from impactwatch.catalog.model import Catalog
from impactwatch.contract.alerts import KIND, PLATFORM, Kind
from impactwatch.dashboards.links import BOARDS, dashboard_url, panel_link
from impactwatch.dashboards.products import firing
from impactwatch.dashboards.promql import CatalogLabels, label_chain, proof_part, with_fill
from impactwatch.router.settings import RouterSettings

BASE = "https://grafana.example.com"


def test_dashboard_url_puts_variables_in_grafanas_url_form() -> None:
    assert dashboard_url(BASE, "team", team="risk", dag_id="risk_scoring") == (
        f"{BASE}/d/impactwatch-team/team?var-team=risk&var-dag_id=risk_scoring"
    )
    assert dashboard_url(BASE + "/", "platform") == f"{BASE}/d/impactwatch-platform/platform-health"
    url = dashboard_url(
        BASE, "data-products", team=["risk", "markets"], tier=None, dataset="fx rates&more"
    )
    assert url == (
        f"{BASE}/d/impactwatch-data-products/data-products"
        "?var-team=risk&var-team=markets&var-dataset=fx+rates%26more"
    )
    assert dashboard_url(BASE, "team", team="risk", from_=1795500000000, to="now") == (
        f"{BASE}/d/impactwatch-team/team?var-team=risk&from=1795500000000&to=now"
    )


def test_dashboard_url_refuses_what_the_dashboard_would_ignore() -> None:
    with pytest.raises(ValueError, match="no dashboard kind 'teams'; use one of: data-products"):
        dashboard_url(BASE, "teams")
    with pytest.raises(ValueError, match="has no variable 'dataset'; use one of: team, dag_id"):
        dashboard_url(BASE, "team", dataset="fx_rates")
    with pytest.raises(ValueError, match="no variable 'pipeline'"):
        panel_link("team", pipeline="${__data.fields.dag_id}")


def test_panel_links_leave_grafana_templates_for_grafana() -> None:
    assert panel_link("team", team="${__data.fields.team}") == (
        "/d/impactwatch-team/team?var-team=${__data.fields.team}&${__url_time_range}"
    )


def test_the_routers_default_link_matches_the_data_products_dashboard() -> None:
    path, _, query = RouterSettings().grafana_dashboard.partition("?")
    board = BOARDS["data-products"]
    assert path == board.path
    names = {pair.split("=")[0].removeprefix("var-") for pair in query.split("&")}
    assert names <= set(board.variables)


def test_platform_alerts_are_told_apart_by_the_rules_kind_label() -> None:
    assert PLATFORM in get_args(Kind)
    rules = platform_group(Catalog.model_validate({}), RuleSettings())
    assert {alert.kind for alert in rules.alerts} == {PLATFORM}
    assert firing((KIND, "=", PLATFORM)) == 'ALERTS{alertstate="firing", kind="platform"}'


def test_fill_is_parsed_and_stripped_for_the_proof() -> None:
    expr = with_fill("count by (dataset) (x)", "group by (dataset) (y)")
    assert expr.endswith("or 0 * group by (dataset) (y)")
    assert proof_part(expr) == "count by (dataset) (x)"
    assert proof_part("up") == "up"


def test_catalog_labels_escape_names_and_titles() -> None:
    catalog = Catalog.model_validate(
        {
            "datasets": {
                "sales.eu": {"title": 'EU "sales" in $', "produced_by": {"dag": "etl.v2"}},
                "plain": {"produced_by": "s3://bucket/plain"},
            }
        }
    )
    labels = CatalogLabels.of(catalog)
    assert labels.producers == {"etl.v2": ["sales.eu"]}
    text = labels.label("x")
    assert '"dag_id", "etl.v2", "dataset", "sales\\\\.eu"' in text
    assert '"title", "EU \\"sales\\" in $$", "dataset", "sales\\\\.eu"' in text
    assert '"title", "Plain", "dataset", "plain"' in text
    assert text.count("label_replace(") == 4


def test_label_chain_reads_one_replacement_per_line() -> None:
    assert label_chain("up", [("a", "b", "c", "d"), ("e", "f", "g", "h")]) == (
        'label_replace(label_replace(\n  up,\n  "a", "b", "c", "d"),\n  "e", "f", "g", "h")'
    )
    assert label_chain("up", []) == "up"
