"""promtool tests of the generated pipeline rules (example catalog, shipped settings): run too
long, missed deadline, failed critical pipeline. Fire just after `for:` and not just before,
escalate, resolve at the right minute, stay silent for paused DAGs and before the first run;
exact labels and annotations.

promtool starts at t=0 (Unix epoch). Shipped timing: rules evaluated every 15s, `for: 1m`.
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


def pipe(alert: str, dag_id: str, team: str, severity: str, kind: str, summary: str, about: str):
    return expect(
        {"dag_id": dag_id, "team": team, "severity": severity, "kind": kind},
        {
            "summary": summary,
            "description": about.format(team=team),
            "runbook_url": f"{BASE}/{alert}.md",
            "producers": "",
        },
    )


RUN_LONG = "Owned by {team}. Every data product this pipeline refreshes will be late until the run finishes."  # noqa: E501
LATE = "Owned by {team}. What the business expects from this pipeline by its deadline (reports, submissions, refreshed data) is late. Clears when a run succeeds."  # noqa: E501
FAILED = "Owned by {team}. The data products it refreshes stay stale until a run succeeds. Last failed run ended 1970-01-01 00:01:40 +0000 UTC."  # noqa: E501


def dag(dag_id: str, team: str) -> dict[str, str]:
    return {"dag_id": dag_id, "team": team, **SCRAPE}


def running(dag_id: str, team: str, limit: float, oldest: str, paused: str = "0x1000"):
    return [
        series(c.DAG_RUN_OLDEST_RUNNING, dag(dag_id, team), oldest),
        series(c.DAG_RUN_MAX_DURATION, dag(dag_id, team), f"{limit:g}x1000"),
        series(c.DAG_PAUSED, dag(dag_id, team), paused),
    ]


def too_long(dag_id: str, team: str, severity: str, summary: str) -> dict:
    ladder = (
        " Escalates to critical past twice the limit."
        if severity == "warning"
        else " Critical: past twice the limit, or a critical pipeline."
    )
    return pipe(
        names.PIPELINE_RUN_TOO_LONG, dag_id, team, severity, "duration", summary, RUN_LONG + ladder
    )


def learned(dag_id: str, team: str, limit: float, usual: float, oldest: str) -> list:
    return [
        series(c.DAG_RUN_OLDEST_RUNNING, dag(dag_id, team), oldest),
        series(
            c.DAG_RUN_MAX_DURATION, {**dag(dag_id, team), "source": "learned"}, f"{limit:g}x1000"
        ),
        series(
            c.DAG_RUN_USUAL_DURATION,
            {**dag(dag_id, team), "quantile": "0.5"},
            f"{usual:g}x1000",
        ),
        series(c.DAG_PAUSED, dag(dag_id, team), "0x1000"),
    ]


LEARNED_ABOUT = (
    RUN_LONG + " No max_duration in the catalog: the limit is learned from its run history "
    "(add max_duration to the catalog to set one). Escalates to critical past twice the limit."
)

SCENARIOS: dict[str, list[TestGroup]] = {
    # A DAG the catalog gives no max_duration: the collector's learned limit (30m, usually
    # 20m) applies, and the alert says so; over at 30m15s, firing a minute later.
    "run too long: learned limit": [
        group(
            "learned duration",
            learned("fx_backfill", "platform", 1800, 1200, "0+15x200"),
            [
                case("31m", names.PIPELINE_RUN_TOO_LONG),
                case(
                    "31m15s",
                    names.PIPELINE_RUN_TOO_LONG,
                    expect(
                        {
                            "dag_id": "fx_backfill",
                            "team": "platform",
                            "severity": "warning",
                            "kind": "duration",
                            "source": "learned",
                        },
                        {
                            "summary": "Pipeline fx_backfill has been running for 31m; it "
                            "usually takes 20m 0s (learned limit 30m)",
                            "description": LEARNED_ABOUT.format(team="platform"),
                            "runbook_url": f"{BASE}/{names.PIPELINE_RUN_TOO_LONG}.md",
                            "producers": "",
                        },
                    ),
                ),
            ],
        )
    ],
    # nightly_heavy_etl (high, 2h): a run started at 0; over 2h at 2h0m15s, firing at 2h1m15s,
    # critical past 4h; the run ends at 4h5m (series goes stale) and both resolve.
    # risk_scoring (critical tier, 20m): critical at once. Paused payments_reconciliation: never.
    "run too long: ladder, critical tier, paused, run ends": [
        group(
            "duration",
            [
                *running("nightly_heavy_etl", "platform", 7200, "0+15x980 stale"),
                *running("risk_scoring", "risk", 1200, "0+15x200 stale"),
                *running("payments_reconciliation", "finance", 600, "0+15x400", "1x1000"),
            ],
            [
                case("21m", names.PIPELINE_RUN_TOO_LONG),
                case(
                    "21m15s",
                    names.PIPELINE_RUN_TOO_LONG,
                    too_long(
                        "risk_scoring",
                        "risk",
                        "critical",
                        "Pipeline risk_scoring has been running for 21m (limit 20m)",
                    ),
                ),
                case("2h1m", names.PIPELINE_RUN_TOO_LONG),
                case(
                    "2h1m15s",
                    names.PIPELINE_RUN_TOO_LONG,
                    too_long(
                        "nightly_heavy_etl",
                        "platform",
                        "warning",
                        "Pipeline nightly_heavy_etl has been running for 2h 1m (limit 2h)",
                    ),
                ),
                case(
                    "4h1m15s",
                    names.PIPELINE_RUN_TOO_LONG,
                    too_long(
                        "nightly_heavy_etl",
                        "platform",
                        "warning",
                        "Pipeline nightly_heavy_etl has been running for 4h 1m (limit 2h)",
                    ),
                    too_long(
                        "nightly_heavy_etl",
                        "platform",
                        "critical",
                        "Pipeline nightly_heavy_etl has been running for 4h 1m (limit 2h)",
                    ),
                ),
                case("4h5m15s", names.PIPELINE_RUN_TOO_LONG),
            ],
        )
    ],
    # Deadline instants at 10m. morning_reporting (high) -> warning, regulatory_submission
    # (critical) -> critical; both firing at 11m15s. morning_reporting's run succeeds at 20m (its
    # next deadline moves a day ahead): resolved. payments_reconciliation is paused;
    # risk_scoring never succeeded, so has no deadline series: neither alerts.
    "missed deadline: tiers, met, paused, before first run": [
        group(
            "deadline",
            [
                series(
                    c.DAG_RUN_DEADLINE, dag("morning_reporting", "reporting"), "600x80 87000x40"
                ),
                series(c.DAG_RUN_DEADLINE, dag("regulatory_submission", "compliance"), "600x120"),
                series(c.DAG_RUN_DEADLINE, dag("payments_reconciliation", "finance"), "600x120"),
                series(c.DAG_PAUSED, dag("payments_reconciliation", "finance"), "1x120"),
                series(c.DAG_PAUSED, dag("risk_scoring", "risk"), "0x120"),
            ],
            [
                case("11m", names.PIPELINE_MISSED_DEADLINE),
                case(
                    "11m15s",
                    names.PIPELINE_MISSED_DEADLINE,
                    pipe(
                        names.PIPELINE_MISSED_DEADLINE,
                        "morning_reporting",
                        "reporting",
                        "warning",
                        "deadline",
                        "Pipeline morning_reporting missed its daily deadline: no "
                        "successful run, 1m late",
                        LATE,
                    ),
                    pipe(
                        names.PIPELINE_MISSED_DEADLINE,
                        "regulatory_submission",
                        "compliance",
                        "critical",
                        "deadline",
                        "Pipeline regulatory_submission missed its "
                        "daily deadline: no successful run, 1m late",
                        LATE,
                    ),
                ),
                case(
                    "20m15s",
                    names.PIPELINE_MISSED_DEADLINE,
                    pipe(
                        names.PIPELINE_MISSED_DEADLINE,
                        "regulatory_submission",
                        "compliance",
                        "critical",
                        "deadline",
                        "Pipeline regulatory_submission missed its "
                        "daily deadline: no successful run, 10m late",
                        LATE,
                    ),
                ),
            ],
        )
    ],
    # risk_scoring (critical): failed at 100s after a success at 50s -> firing 1m after; a
    # success at 300s resolves it. market_data_ingest failed and never succeeded -> fires.
    # payments_reconciliation is not critical; regulatory_submission is paused: silent.
    "failed critical pipeline: fires, resolves on success": [
        group(
            "failure",
            [
                series(c.DAG_RUN_LAST_FAILURE, dag("risk_scoring", "risk"), "100x40"),
                series(c.DAG_RUN_LAST_SUCCESS, dag("risk_scoring", "risk"), "50x19 300x20"),
                series(c.DAG_RUN_LAST_FAILURE, dag("market_data_ingest", "markets"), "100x40"),
                series(c.DAG_RUN_LAST_FAILURE, dag("payments_reconciliation", "finance"), "100x40"),
                series(
                    c.DAG_RUN_LAST_FAILURE, dag("regulatory_submission", "compliance"), "100x40"
                ),
                series(c.DAG_PAUSED, dag("regulatory_submission", "compliance"), "1x40"),
            ],
            [
                case("45s", names.CRITICAL_PIPELINE_FAILED),
                case(
                    "1m",
                    names.CRITICAL_PIPELINE_FAILED,
                    *(
                        pipe(
                            names.CRITICAL_PIPELINE_FAILED,
                            d,
                            t,
                            "critical",
                            "failure",
                            f"Critical pipeline {d} failed: its latest run did not succeed",
                            FAILED,
                        )
                        for d, t in (("market_data_ingest", "markets"), ("risk_scoring", "risk"))
                    ),
                ),
                case(
                    "5m",
                    names.CRITICAL_PIPELINE_FAILED,
                    pipe(
                        names.CRITICAL_PIPELINE_FAILED,
                        "market_data_ingest",
                        "markets",
                        "critical",
                        "failure",
                        "Critical pipeline market_data_ingest failed: its latest run "
                        "did not succeed",
                        FAILED,
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


def test_every_pipeline_alert_has_a_firing_and_a_silent_case() -> None:
    firing, silent = alerts_covered(g for groups in SCENARIOS.values() for g in groups)
    assert {
        names.PIPELINE_RUN_TOO_LONG,
        names.PIPELINE_MISSED_DEADLINE,
        names.CRITICAL_PIPELINE_FAILED,
    } <= firing & silent
