"""Impact: blast radius by tier and team, what is at stake, and the ranking (router/impact.py)."""

from __future__ import annotations

import copy

from impactwatch.catalog.model import Catalog
from impactwatch.router import impact as im
from impactwatch.router.incident_list import rows, table
from impactwatch.router.notices import render_digest
from impactwatch.router.render import render_incident
from impactwatch.router.routing import Lineage
from tests.unit.test_router_render import all_text, ctx, incident, state
from tests.unit.test_router_support import CATALOG, T0


def staked() -> Catalog:
    data = copy.deepcopy(CATALOG)
    data["datasets"]["customer_risk_scores"]["impact"] = "Trades are approved on <!here> scores"
    return Catalog.model_validate(data)


def failed_ingest(opened: float = T0 - 1000):  # type: ignore[no-untyped-def]
    alert = state(
        "dag:market_data_ingest",
        "markets",
        alertname="PipelineRunFailed",
        kind="failure",
        severity="critical",
        labels={"dag_id": "market_data_ingest"},
    )
    inc = incident(alert, key="dag:market_data_ingest", severity="critical")
    inc.id, inc.opened_at = "ingest", opened
    return inc


def stale_kpis(severity: str = "critical", opened: float = T0 - 5000):  # type: ignore[no-untyped-def]
    inc = incident(
        state("dataset:daily_kpi_report", "reporting", severity=severity),
        key="dataset:daily_kpi_report",
        team="reporting",
        severity=severity,
    )
    inc.id, inc.opened_at = f"kpis-{severity}", opened
    return inc


def test_the_blast_radius_is_everything_downstream_by_tier_with_its_teams() -> None:
    cat = staked()
    found = im.blast_radius(cat, Lineage(cat), failed_ingest())
    # market data (critical) -> customer risk scores (critical) -> regulatory submission
    assert found.products == ("customer_risk_scores", "market_data", "regulatory_submission")
    assert found.by_tier == {"critical": 2, "high": 0, "standard": 1}
    assert found.teams == ("compliance", "markets", "risk")
    assert found.score == 2 * 10 + 1
    assert found.stakes == (("customer_risk_scores", "Trades are approved on <!here> scores"),)


def test_products_an_asset_feeds_count_through_the_alerts_producers() -> None:
    cat = staked()
    inc = failed_ingest()
    # The catalog does not say that risk_scoring feeds anything; the alert's annotation does.
    alert = state(
        "dag:risk_scoring",
        "risk",
        alertname="PipelineRunFailed",
        kind="failure",
        labels={"dag_id": "risk_scoring"},
        annotations={"producers": "customer_risk_scores=risk_scoring/publish "},
    )
    inc = incident(alert, key="dag:risk_scoring", team="risk")
    found = im.blast_radius(
        cat,
        Lineage(
            Catalog.model_validate(
                {
                    **CATALOG,
                    "datasets": {
                        k: {**v, "produced_by": None} if k == "customer_risk_scores" else v
                        for k, v in CATALOG["datasets"].items()
                    },
                }
            )
        ),
        inc,
    )
    assert found.products == ("customer_risk_scores", "regulatory_submission")


def test_ranked_by_tier_weighted_count_then_severity_then_age() -> None:
    cat = staked()
    lineage = Lineage(cat)
    small_old = stale_kpis("critical", T0 - 9000)  # 1 standard product: score 1
    small_warn = stale_kpis("warning", T0 - 9999)  # same score, less severe
    big_new = failed_ingest(T0 - 10)  # score 21, the newest
    resolved = failed_ingest()
    resolved.id, resolved.status = "over", "resolved"
    order = [i.id for i, _ in im.ranked(cat, lineage, [small_warn, resolved, small_old, big_new])]
    assert order == ["ingest", "kpis-critical", "kpis-warning"]
    platform = incident(
        state("component:collector", "platform", kind="platform"),
        key="component:collector",
        team="platform",
    )
    assert im.blast_radius(cat, lineage, platform).score == 0


def test_the_message_shows_the_impact_and_what_is_at_stake_escaped() -> None:
    text = all_text(render_incident(ctx(staked()), failed_ingest(), T0))
    assert (
        "*Impact* (score 21): 3 data products (2 critical, 1 standard): Customer risk scores, "
        "Market prices, Regulatory submission; teams compliance, markets, risk"
    ) in text
    assert "At stake for Customer risk scores: Trades are approved on &lt;!here&gt; scores" in text


def test_the_digest_and_the_listing_order_open_incidents_by_impact() -> None:
    cat = staked()
    opened = im.ranked(cat, Lineage(cat), [stale_kpis(), failed_ingest()])
    out = all_text(render_digest(ctx(cat), "reporting", [], T0 - 86400, T0, opened))
    first, second = out.index("Pipeline `market_data_ingest`"), out.index("Daily KPI report —")
    assert "Open incidents touching reporting, by impact" in out and first < second
    listed = rows(cat, [stale_kpis(), failed_ingest()], limit=10)
    assert [(r["rank"], r["score"], r["incident"]) for r in listed] == [
        (1, 21, "market_data_ingest — pipeline run failed"),
        (2, 1, "Daily KPI report — out of date"),
    ]
    assert listed[0]["products"] == {"critical": 2, "standard": 1}
    assert rows(cat, [stale_kpis(), failed_ingest()], limit=1)[0]["id"] == "ingest"
    assert "at stake for Customer risk scores: Trades" in table(listed)
    assert table([]) == "No open incidents."
