"""promtool tests of the generated cost rules (shipped settings, example catalog: USD).

PipelineCostAnomaly: the latest run against the median of the 20 before it, as the collector
exports them; CostModelOff: the ratio `impactwatch cost reconcile` exports. One case just before
`for:` elapses and one just after, exact labels and rendered annotations, runbook_url included.
promtool starts at t=0 and evaluates every 15s, as the rule groups do.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from impactwatch.alert_rules.cost import money
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
SCRAPE = {"instance": "127.0.0.1:9464", "job": "impactwatch-collector"}
RECONCILE = {"instance": "127.0.0.1:9466", "job": "impactwatch-cost"}


@pytest.fixture(scope="module")
def rule_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    files = generate(load_catalog(EXAMPLE), RuleSettings())
    return write_rule_files(files, tmp_path_factory.mktemp("rules"))


def costs(dag_id: str, team: str, last: str, median: str | None) -> list[dict[str, str]]:
    labels = {"dag_id": dag_id, "team": team, **SCRAPE}
    out = [series(c.DAG_RUN_LAST_COST, labels, last)]
    if median is not None:
        out.append(series(c.DAG_RUN_MEDIAN_COST, labels, median))
    return out


def anomaly(dag_id: str, team: str, summary: str, times: str) -> dict:
    return expect(
        {"dag_id": dag_id, "team": team, "severity": "warning", "kind": "cost"},
        {
            "summary": summary,
            "description": f"Owned by {team}. That is {times} times the median cost of its last "
            "20 runs. Usual causes: more data than usual, retries, a task stuck running, a "
            "change to the pipeline or its resources. Clears when a run costs its usual again.",
            "runbook_url": f"{BASE}/{names.PIPELINE_COST_ANOMALY}.md",
        },
    )


def model_off(pipeline: str, direction: str, summary: str) -> dict:
    return expect(
        {
            "pipeline": pipeline,
            "direction": direction,
            "team": "platform",
            "component": "cost_model",
            "severity": "warning",
            "kind": "platform",
        },
        {
            "summary": summary,
            "description": "Costs shown to the business for this pipeline are off by that "
            "factor. Check the rates, pools and instance types in the catalog's cost section "
            "against what the pipeline runs on, and that only its resources carry its cost "
            "allocation tag.",
            "runbook_url": f"{BASE}/{names.COST_MODEL_OFF}.md",
        },
    )


RISK = anomaly(
    "risk_scoring", "risk", "The latest risk scoring run cost $312.40, usually $95.10", "3.3"
)

SCENARIOS: dict[str, list[TestGroup]] = {
    # risk_scoring usually costs $95.10; the run finishing at 5m cost $312.40 (3.3x): pending
    # from 5m, firing after the 1m for:, until the next run (10m15s) costs $120 again.
    # Beside it, runs that must never page: 2.6x the median, 5x but under $1, no median yet.
    "a run far above its median, and runs that are not": [
        group(
            "anomaly",
            [
                *costs("risk_scoring", "risk", "95.1x19 312.4x20 120x20", "95.1x60"),
                *costs("morning_reporting", "reporting", "250x60", "95x60"),
                *costs("market_data_ingest", "markets", "0.5x60", "0.1x60"),
                *costs("payments_reconciliation", "finance", "900x60", None),
            ],
            [
                case("4m45s", names.PIPELINE_COST_ANOMALY),
                case("5m45s", names.PIPELINE_COST_ANOMALY),
                case("6m", names.PIPELINE_COST_ANOMALY, RISK),
                case("9m45s", names.PIPELINE_COST_ANOMALY, RISK),
                case("10m15s", names.PIPELINE_COST_ANOMALY),
            ],
        )
    ],
    # The bill says 2.3x the estimate for nightly_heavy_etl, 0.4x for risk_scoring (the estimate
    # is 2.5x the bill), 1.5x for payments_reconciliation (within the limit): firing after 1m.
    "the AWS bill far from the estimate, either way": [
        group(
            "model",
            [
                series(
                    c.COST_MODEL_RATIO,
                    {"dag_id": "nightly_heavy_etl", "team": "platform", **RECONCILE},
                    "2.3x10",
                ),
                series(
                    c.COST_MODEL_RATIO,
                    {"dag_id": "risk_scoring", "team": "risk", **RECONCILE},
                    "0.4x10",
                ),
                series(
                    c.COST_MODEL_RATIO,
                    {"dag_id": "payments_reconciliation", "team": "finance", **RECONCILE},
                    "1.5x10",
                ),
            ],
            [
                case("45s", names.COST_MODEL_OFF),
                case(
                    "1m",
                    names.COST_MODEL_OFF,
                    model_off(
                        "nightly_heavy_etl",
                        "bill_higher",
                        "Cost model off by 2.3x for nightly_heavy_etl: the AWS bill is higher "
                        "than impactwatch's estimate",
                    ),
                    model_off(
                        "risk_scoring",
                        "estimate_higher",
                        "Cost model off by 2.5x for risk_scoring: the AWS bill is lower than "
                        "impactwatch's estimate",
                    ),
                ),
            ],
        )
    ],
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_promtool_scenario(scenario: str, rule_files: list[Path]) -> None:
    result = run_rule_tests(rule_files, SCENARIOS[scenario])
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_cost_alert_has_a_firing_and_a_silent_case() -> None:
    firing, silent = alerts_covered(g for groups in SCENARIOS.values() for g in groups)
    assert {names.PIPELINE_COST_ANOMALY, names.COST_MODEL_OFF} <= firing & silent


def test_money_speaks_the_catalogs_currency() -> None:
    assert money("$value", "USD") == '${{ $value | printf "%.2f" }}'
    assert money("$value", "eur") == '€{{ $value | printf "%.2f" }}'
    assert money("$value", "CHF") == '{{ $value | printf "%.2f" }} CHF'


def test_thresholds_come_from_the_settings() -> None:
    settings = RuleSettings(cost_anomaly_factor=5, cost_anomaly_min=10, cost_model_off_factor=1.5)
    text = generate(load_catalog(EXAMPLE), settings)["rules/impactwatch-cost.rules.yml"]
    assert "> 5 * max by (dag_id, team)" in text and ">= 10" in text
    assert text.count("> 1.5,") == 2
