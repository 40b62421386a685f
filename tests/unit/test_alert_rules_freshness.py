"""promtool tests of the generated freshness rules (example catalog, shipped settings): fire
just after `for:` and not just before, escalate, resolve when the data is fresh again, stay
silent while the producer is paused and before the first update; exact labels and annotations.

promtool starts at t=0 (Unix epoch): a timestamp of 0 means "updated at the start".
Shipped timing: rules evaluated every 15s, freshness `for: 30s`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from impactwatch.alert_rules.generate import generate
from impactwatch.alert_rules.promtool import (
    TestGroup,
    alerts_covered,
    case,
    expect,
    group,
    run_rule_tests,
    series,
    write_rule_files,
)
from impactwatch.alert_rules.settings import DEFAULT_RUNBOOK_BASE_URL as BASE
from impactwatch.alert_rules.settings import RuleSettings
from impactwatch.catalog.loader import load_catalog
from impactwatch.contract import alerts as names
from impactwatch.contract import metrics as c

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "catalog.yaml"
SCRAPE = {"instance": "127.0.0.1:9464", "job": "impactwatch-collector"}  # dropped by the rules


@pytest.fixture(scope="module")
def rule_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    files = generate(load_catalog(EXAMPLE), RuleSettings())
    return write_rule_files(files, tmp_path_factory.mktemp("rules"))


def ds(name: str, team: str, tier: str) -> dict[str, str]:
    return {"dataset": name, "team": team, "tier": tier}


def product(name: str, team: str, tier: str, last: str, sla: float, paused: str = "0x1000"):
    """The three series the collector exports for a data product (no `last`: never updated)."""
    labels = {**ds(name, team, tier), **SCRAPE}
    out = [
        series(c.DATASET_FRESHNESS_SLA, labels, f"{sla:g}x1000"),
        series(c.DATASET_PRODUCER_PAUSED, labels, paused),
    ]
    return out + ([series(c.DATASET_LAST_UPDATED, labels, last)] if last else [])


def stale(
    name: str,
    team: str,
    tier: str,
    severity: str,
    summary: str,
    description: str,
    runbook: str,
    producers: str = "",
) -> dict:
    labels = {**ds(name, team, tier), "severity": severity, "kind": "freshness"}
    return expect(
        labels,
        {
            "summary": summary,
            "description": description,
            "runbook_url": f"{BASE}/{runbook}",
            "producers": producers,
        },
    )


def producer(name: str, dag_id: str, task_id: str = "") -> dict[str, str]:
    labels = {"dataset": name, "dag_id": dag_id, "task_id": task_id, **SCRAPE}
    return series(c.DATASET_PRODUCER, labels, "1x1000")


# The product's own producer and those of what it is built from, as Airflow declares them.
SCORES_PRODUCERS = [
    producer("customer_risk_scores", "risk_scoring", "publish_scores"),
    producer("market_data", "market_data_ingest", "publish_prices"),
    producer("daily_kpi_report", "morning_reporting"),  # downstream of it: not its producer
]
SCORES_WORDS = (
    "customer_risk_scores=risk_scoring/publish_scores "
    "market_data=market_data_ingest/publish_prices "
)


SCORES = "Owned by risk, critical tier; must be refreshed at least every 1h 30m. Updated by events of the Airflow Asset s3://fintech-lake/risk/customer_scores. Built from Market prices and FX rates: if those are stale too, start there. Also out of date until it is refreshed: Daily KPI report, Executive morning pack and Regulatory submission (daily). Credit and market risk score for every customer, used to approve trades. Critical-tier data product: critical from the start."  # noqa: E501
FX = "Owned by markets, high tier; must be refreshed at least every 2h. Updated by task fetch_fx_rates of pipeline market_data_ingest. Also out of date until it is refreshed: Customer risk scores, Daily KPI report, Executive morning pack and Regulatory submission (daily)."  # noqa: E501
DECLARED = "Owned by {team}, {tier} tier. It is declared in Airflow (an Asset's extra or a DAG tag), not in the catalog file: add it there to get its title, lineage and runbook in this alert."  # noqa: E501


def scores(summary: str, producers: str = "") -> dict:
    return stale(
        "customer_risk_scores",
        "risk",
        "critical",
        "critical",
        summary,
        SCORES,
        "data-products/customer_risk_scores.md",
        producers,
    )


def fx(severity: str, summary: str) -> dict:
    ladder = (
        "Escalates to critical past 4h."
        if severity == "warning"
        else "Critical: stale for more than twice its 2h limit."
    )
    return stale(
        "fx_rates",
        "markets",
        "high",
        severity,
        summary,
        f"{FX} {ladder}",
        "data-products/fx_rates.md",
    )


LIKELY_LATE = "Owned by markets. Not late yet: the run that makes it is behind its usual pace, learned from history. Becomes the stale data product's incident if the breach comes; resolves (caught up) if the run recovers."  # noqa: E501
FX_RUN = {"dag_id": "market_data_ingest", "team": "markets"}


def expected_fx(values: str) -> list[dict[str, str]]:
    """fx_rates (due at 2h: updated at 0, limit 2h) and its run's predicted update."""
    labels = {**ds("fx_rates", "markets", "high"), **SCRAPE}
    at = {**labels, "dag_id": "market_data_ingest", "task_id": "fetch_fx_rates"}
    return [
        series(c.DATASET_EXPECTED_UPDATE, at, values),
        series(c.DATASET_UPDATE_DUE, labels, "7200x400"),
        series(c.DAG_RUN_BEHIND, {**FX_RUN, "task_id": "fetch_fx_rates", **SCRAPE}, "2100x400"),
    ]


SCENARIOS: dict[str, list[TestGroup]] = {
    # fx_rates is due at 2h; its run is expected to update it 5 min late until 10m (within
    # the 10 min margin), then 40 min late: pending at 10m15s, firing 30s later with the
    # times the router words; back within the margin past 60m, it resolves (caught up).
    "predicted miss: past the limit by the margin, then caught up": [
        group(
            "likely late",
            product("fx_rates", "markets", "high", "0x400", 7200)
            + expected_fx("7500x40 9600x200 7300x100"),
            [
                case("10m", names.DATA_PRODUCT_LIKELY_LATE),
                case("10m30s", names.DATA_PRODUCT_LIKELY_LATE),
                case(
                    "10m45s",
                    names.DATA_PRODUCT_LIKELY_LATE,
                    expect(
                        {
                            **ds("fx_rates", "markets", "high"),
                            "dag_id": "market_data_ingest",
                            "severity": "warning",
                            "kind": "predicted",
                        },
                        {
                            "summary": "fx_rates will likely be ~40m 0s late: "
                            "market_data_ingest is behind its usual pace",
                            "description": LIKELY_LATE,
                            "runbook_url": f"{BASE}/DataProductLikelyLate.md",
                            "producers": "",
                            "expected_at": "9600",
                            "due_at": "7200",
                            "task_id": "fetch_fx_rates",
                            "behind_seconds": "2100",
                        },
                    ),
                ),
                case("61m", names.DATA_PRODUCT_LIKELY_LATE),
            ],
        )
    ],
    # Stale at 90m (first evaluation past it: 90m15s), pending for 30s, firing at 90m45s;
    # a fresh update at 100m15s resolves it at that very evaluation.
    "critical product: fires after for:, resolves when fresh": [
        group(
            "customer_risk_scores",
            product("customer_risk_scores", "risk", "critical", "0x400 6000x40", 5400)
            + SCORES_PRODUCERS,
            [
                case("90m30s", names.DATA_PRODUCT_STALE),
                case(
                    "90m45s",
                    names.DATA_PRODUCT_STALE,
                    scores("Customer risk scores are 1h 30m stale (limit 1h 30m)", SCORES_WORDS),
                ),
                case(
                    "100m",
                    names.DATA_PRODUCT_STALE,
                    scores("Customer risk scores are 1h 40m stale (limit 1h 30m)", SCORES_WORDS),
                ),
                case("100m15s", names.DATA_PRODUCT_STALE),
            ],
        )
    ],
    # High tier: warning past 2h, critical past 4h (both firing; Alertmanager inhibits).
    "standard ladder: warning, then critical past twice the limit": [
        group(
            "fx_rates",
            product("fx_rates", "markets", "high", "0x1000", 7200),
            [
                case("2h30s", names.DATA_PRODUCT_STALE),
                case(
                    "2h45s",
                    names.DATA_PRODUCT_STALE,
                    fx("warning", "FX rates are 2h stale (limit 2h)"),
                ),
                case(
                    "4h30s",
                    names.DATA_PRODUCT_STALE,
                    fx("warning", "FX rates are 4h stale (limit 2h)"),
                ),
                case(
                    "4h45s",
                    names.DATA_PRODUCT_STALE,
                    fx("warning", "FX rates are 4h stale (limit 2h)"),
                    fx("critical", "FX rates are 4h stale (limit 2h)"),
                ),
            ],
        )
    ],
    # fx_rates fires at 2h0m45s; pausing its producer at 2h5m15s silences it at once. Market
    # prices were never updated (no timestamp series): nothing to judge, no alert.
    "paused producer and never-updated product stay silent": [
        group(
            "paused",
            [
                *product("fx_rates", "markets", "high", "0x1000", 7200, "0x500 1x500"),
                *product("market_data", "markets", "critical", "", 7200),
            ],
            [
                case(
                    "2h45s",
                    names.DATA_PRODUCT_STALE,
                    fx("warning", "FX rates are 2h stale (limit 2h)"),
                ),
                case(
                    "2h5m",
                    names.DATA_PRODUCT_STALE,
                    fx("warning", "FX rates are 2h 5m stale (limit 2h)"),
                ),
                case("2h5m15s", names.DATA_PRODUCT_STALE),
                case("3h", names.DATA_PRODUCT_STALE),
            ],
        )
    ],
    # A collector restart: three failed scrapes (stale markers) while the alert fires. The
    # alert neither resolves nor re-enters pending (which would hide it for 30s).
    "collector restart does not reset the alert": [
        group(
            "gap",
            product(
                "customer_risk_scores", "risk", "critical", "0x364 stale stale stale 0x40", 5400
            ),
            [
                case(
                    "91m30s",
                    names.DATA_PRODUCT_STALE,
                    scores("Customer risk scores are 1h 31m stale (limit 1h 30m)"),
                ),
                case(
                    "91m45s",
                    names.DATA_PRODUCT_STALE,
                    scores("Customer risk scores are 1h 31m stale (limit 1h 30m)"),
                ),
            ],
        )
    ],
    # Products only Airflow declares: one generic rule, ladder by tier; catalog products
    # (customer_risk_scores, here with a 10m limit in its metric) keep their own rule only.
    "products declared only in Airflow": [
        group(
            "generic",
            [
                *product("vendor_feed", "platform", "standard", "0x1000", 600),
                *product("model_inputs", "risk", "critical", "0x1000", 600),
                *product("customer_risk_scores", "risk", "critical", "0x1000", 600),
            ],
            [
                case("10m30s", names.DATA_PRODUCT_STALE),
                case(
                    "10m45s",
                    names.DATA_PRODUCT_STALE,
                    stale(
                        "vendor_feed",
                        "platform",
                        "standard",
                        "warning",
                        "Data product vendor_feed is 10m stale (limit 10m)",
                        DECLARED.format(team="platform", tier="standard")
                        + " Escalates to critical past twice its limit.",
                        "DataProductStale.md",
                    ),
                    stale(
                        "model_inputs",
                        "risk",
                        "critical",
                        "critical",
                        "Data product model_inputs is 10m stale (limit 10m)",
                        DECLARED.format(team="risk", tier="critical")
                        + " Critical: critical tier, or stale past twice its limit.",
                        "DataProductStale.md",
                    ),
                    scores("Customer risk scores are 10m stale (limit 1h 30m)"),
                ),
            ],
        )
    ],
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_promtool_scenario(scenario: str, rule_files: list[Path]) -> None:
    result = run_rule_tests(rule_files, SCENARIOS[scenario])
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_freshness_alert_has_a_firing_and_a_silent_case() -> None:
    firing, silent = alerts_covered(g for groups in SCENARIOS.values() for g in groups)
    assert {names.DATA_PRODUCT_STALE, names.DATA_PRODUCT_LIKELY_LATE} <= firing & silent
