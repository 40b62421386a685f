"""promtool tests of the generated platform rules (shipped settings): Airflow's scheduler, pools,
XCom and parsing, impactwatch's collector and router. One case just before `for:` elapses, one
just after, exact labels and annotations; hysteresis (`keep_firing_for`) where it is used.

promtool starts at t=0 (Unix epoch) and evaluates every 15s, as the rule groups do.
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
SCRAPE = {"instance": "127.0.0.1:9464", "job": "impactwatch-collector"}
LADDER = {
    "warning": " Escalates to critical at twice the limit.",
    "critical": " Critical: past twice the limit.",
}


@pytest.fixture(scope="module")
def rule_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    files = generate(load_catalog(EXAMPLE), RuleSettings())
    return write_rule_files(files, tmp_path_factory.mktemp("rules"))


def alert(name: str, component: str, severity: str, summary: str, description: str, **labels):
    return expect(
        {
            "team": "platform",
            "severity": severity,
            "kind": "platform",
            "component": component,
            **labels,
        },
        {"summary": summary, "description": description, "runbook_url": f"{BASE}/{name}.md"},
    )


def scheduler_down(severity: str, age: str) -> dict:
    return alert(
        names.SCHEDULER_DOWN,
        "scheduler",
        severity,
        f"Airflow is not scheduling: no scheduler heartbeat for {age} (limit 2m)",
        "No pipeline starts and no data product is refreshed until a scheduler is back."
        + LADDER[severity],
    )


def buckets(slow: str) -> list[dict[str, str]]:
    """Schedule-delay histogram: every run starts 60-120s late while `slow` counts up."""
    labels = {"dag_id": "risk_scoring", "team": "risk", **SCRAPE}
    fast = ("1.0", "5.0", "15.0", "30.0", "60.0")
    late = ("120.0", "300.0", "600.0", "1800.0", "+Inf")
    return [
        series(
            c.DAG_RUN_SCHEDULE_DELAY.series("bucket"),
            {**labels, "le": le},
            "0x300" if le in fast else slow,
        )
        for le in (*fast, *late)
    ]


def calls(outcome: str, values: str) -> dict[str, str]:
    labels = {"method": "chat.postMessage", "outcome": outcome, "instance": "r:9465"}
    return series(c.ROUTER_SLACK_CALLS, {**labels, "job": "impactwatch-router"}, values)


LAGGING = alert(
    names.SCHEDULER_LAGGING,
    "scheduler",
    "warning",
    "Pipelines start late: runs begin 1m 57s after they are due (p95 over 30m, limit 1m)",
    "Every scheduled pipeline starts this late, so every deadline and freshness limit has that "
    "much less slack." + LADDER["warning"],
)
STARVING = alert(
    names.POOL_STARVING,
    "pool",
    "warning",
    "Airflow pool heavy_etl is full: 3 task(s) waiting for a slot for over 10m",
    "Pipelines using this pool run late, and so do the data products they refresh.",
    pool="heavy_etl",
)
XCOM = "XComs live in Airflow's metadata database: large ones slow the scheduler and the UI for every pipeline. Pass a reference (a path, a table) instead of the data."  # noqa: E501
DOWN = "Without the collector no freshness, deadline or failure alert can fire: the business would not hear about stale data. Prometheus job impactwatch-collector{target}."  # noqa: E501
STALE = "The collector serves its last state. Last good read: {age} ago. Freshness alerts keep counting (ages are computed by Prometheus), but new runs, failures and updates are not seen. Critical once the last good read is over 4m old."  # noqa: E501
STUCK = "Slack refuses the router (a revoked token, a missing scope, every fallback channel refused) or delivery is stuck: incidents are not reaching their owners. This alert is also sent outside Slack. The router's log and impactwatch_router_slack_errors_total name Slack's error."  # noqa: E501
ROUTER = "Owners may not hear about stale data or late reports until this clears; meanwhile watch Alertmanager's UI for open incidents."  # noqa: E501


SCENARIOS: dict[str, list[TestGroup]] = {
    # Last heartbeat at 0: over 2m at 2m15s, firing 1m later; critical past 4m; back at 5m45s.
    "scheduler down: ladder and recovery": [
        group(
            "heartbeat",
            [series(c.SCHEDULER_HEARTBEAT, SCRAPE, "0x22 345+15x20")],
            [
                case("3m", names.SCHEDULER_DOWN),
                case("3m15s", names.SCHEDULER_DOWN, scheduler_down("warning", "3m")),
                case("5m", names.SCHEDULER_DOWN, scheduler_down("warning", "5m")),
                case(
                    "5m15s",
                    names.SCHEDULER_DOWN,
                    scheduler_down("warning", "5m"),
                    scheduler_down("critical", "5m"),
                ),
                case("5m45s", names.SCHEDULER_DOWN),
            ],
        )
    ],
    # Runs start 60-120s late (p95 = 117s) until 10m, then none start. Pending from 15s (the
    # first rate), firing after 5m; no start left in the 30m window at 40m, and keep_firing_for
    # holds the alert 10m more: one incident, not a flap.
    "scheduler lagging: for, then keep_firing_for": [
        group(
            "lag",
            buckets("0+1x40 40x260"),
            [
                case("5m", names.SCHEDULER_LAGGING),
                case("5m15s", names.SCHEDULER_LAGGING, LAGGING),
                case("49m45s", names.SCHEDULER_LAGGING, LAGGING),
                case("50m", names.SCHEDULER_LAGGING),
            ],
        )
    ],
    # heavy_etl: 3 tasks queued, no open slot from 0 (firing at 10m) until a slot opens at
    # 15m; held 10m more. default_pool has open slots: never.
    "pool starving: for, then keep_firing_for": [
        group(
            "pools",
            [
                series(
                    c.POOL_SLOTS, {"pool": "heavy_etl", "state": "queued", **SCRAPE}, "3x59 0x100"
                ),
                series(
                    c.POOL_SLOTS, {"pool": "heavy_etl", "state": "open", **SCRAPE}, "0x59 1x100"
                ),
                series(
                    c.POOL_SLOTS, {"pool": "default_pool", "state": "queued", **SCRAPE}, "4x160"
                ),
                series(c.POOL_SLOTS, {"pool": "default_pool", "state": "open", **SCRAPE}, "5x160"),
            ],
            [
                case("9m45s", names.POOL_STARVING),
                case("10m", names.POOL_STARVING, STARVING),
                case("24m45s", names.POOL_STARVING, STARVING),
                case("25m", names.POOL_STARVING),
            ],
        )
    ],
    "xcom bloat: warning and critical past twice the limit": [
        group(
            "xcom",
            [
                series(
                    c.XCOM_LARGEST,
                    {"dag_id": "risk_scoring", "team": "risk", **SCRAPE},
                    "3145728x20",
                ),
                series(
                    c.XCOM_LARGEST,
                    {"dag_id": "morning_reporting", "team": "reporting", **SCRAPE},
                    "1000x20",
                ),
            ],
            [
                case("45s", names.XCOM_BLOAT),
                case(
                    "1m",
                    names.XCOM_BLOAT,
                    *(
                        alert(
                            names.XCOM_BLOAT,
                            "xcom",
                            sev,
                            "Pipeline risk_scoring passes 3MiB through XCom (limit 1MiB)",
                            XCOM + LADDER[sev],
                            dag_id="risk_scoring",
                            team="risk",
                        )
                        for sev in ("warning", "critical")
                    ),
                ),
            ],
        )
    ],
    "dag import errors": [
        group(
            "parsing",
            [series(c.DAG_IMPORT_ERRORS, SCRAPE, "0x3 2x20")],
            [
                case("2m45s", names.DAG_IMPORT_ERRORS),
                case(
                    "3m",
                    names.DAG_IMPORT_ERRORS,
                    alert(
                        names.DAG_IMPORT_ERRORS,
                        "dag_parsing",
                        "warning",
                        "2 DAG file(s) fail to load: their pipelines do not run",
                        "Airflow cannot parse these files, so the pipelines they define are "
                        "neither scheduled nor shown; their data products will go stale.",
                    ),
                ),
            ],
        )
    ],
    # A failing scrape from 1m (firing at 2m); and a Prometheus with no collector target at all.
    "collector down or not scraped": [
        group(
            "down",
            [series("up", SCRAPE, "1x3 0x20")],
            [
                case("1m45s", names.COLLECTOR_DOWN),
                case(
                    "2m",
                    names.COLLECTOR_DOWN,
                    alert(
                        names.COLLECTOR_DOWN,
                        "collector",
                        "critical",
                        "impactwatch is blind: a collector is down or not scraped",
                        DOWN.format(target=", target 127.0.0.1:9464"),
                        **SCRAPE,
                    ),
                ),
            ],
        ),
        group(
            "absent",
            [series("up", {"job": "prometheus", "instance": "p:9090"}, "1x20")],
            [
                case("45s", names.COLLECTOR_DOWN),
                case(
                    "1m",
                    names.COLLECTOR_DOWN,
                    alert(
                        names.COLLECTOR_DOWN,
                        "collector",
                        "critical",
                        "impactwatch is blind: a collector is down or not scraped",
                        DOWN.format(target=""),
                        job="impactwatch-collector",
                    ),
                ),
            ],
        ),
    ],
    # Last good poll at 0, stale flag from 1m: warning after 2m of it; critical past 4m.
    "collector stale: ladder on the last good read": [
        group(
            "stale",
            [
                series(c.COLLECTOR_STALE, SCRAPE, "0x3 1x30"),
                series(c.COLLECTOR_LAST_POLL, SCRAPE, "0x34"),
            ],
            [
                case("2m45s", names.COLLECTOR_STALE),
                case(
                    "3m",
                    names.COLLECTOR_STALE,
                    alert(
                        names.COLLECTOR_STALE,
                        "collector",
                        "warning",
                        "impactwatch cannot read Airflow's database: alerts run on old data",
                        STALE.format(age="3m"),
                    ),
                ),
                case(
                    "4m",
                    names.COLLECTOR_STALE,
                    alert(
                        names.COLLECTOR_STALE,
                        "collector",
                        "warning",
                        "impactwatch cannot read Airflow's database: alerts run on old data",
                        STALE.format(age="4m"),
                    ),
                ),
                case(
                    "4m15s",
                    names.COLLECTOR_STALE,
                    alert(
                        names.COLLECTOR_STALE,
                        "collector",
                        "warning",
                        "impactwatch cannot read Airflow's database: alerts run on old data",
                        STALE.format(age="4m"),
                    ),
                    alert(
                        names.COLLECTOR_STALE,
                        "collector",
                        "critical",
                        "impactwatch has not read Airflow's database for 4m",
                        STALE.format(age="4m"),
                    ),
                ),
            ],
        )
    ],
    # Half of the Slack calls fail from the start: over both 10% and 20%; firing after 5m.
    "router failing to deliver": [
        group(
            "router",
            [calls("ok", "0+1x40"), calls("failed", "0+1x40"), calls("rate_limited", "0x40")],
            [
                case("5m", names.ROUTER_FAILING),
                case(
                    "5m15s",
                    names.ROUTER_FAILING,
                    *(
                        alert(
                            names.ROUTER_FAILING,
                            "router",
                            sev,
                            "Slack alerts are not getting through: 50% of Slack calls failed over "
                            "10m",
                            ROUTER + LADDER[sev],
                        )
                        for sev in ("warning", "critical")
                    ),
                ),
            ],
        )
    ],
    # A message waits from t=0 (the age grows 15 s per scrape), then goes out at 25m.
    "router outbox stuck": [
        group(
            "outbox",
            [
                series(
                    c.ROUTER_OUTBOX_OLDEST,
                    {"instance": "r:9465", "job": "impactwatch-router"},
                    "0+15x99 0x10",
                )
            ],
            [
                case("10m", names.ROUTER_OUTBOX_STUCK),
                case(
                    "10m15s",
                    names.ROUTER_OUTBOX_STUCK,
                    alert(
                        names.ROUTER_OUTBOX_STUCK,
                        "router",
                        "warning",
                        "A Slack message has waited 10m for delivery (limit 10m): owners "
                        "are not being told",
                        STUCK + LADDER["warning"],
                    ),
                ),
                case(
                    "20m15s",
                    names.ROUTER_OUTBOX_STUCK,
                    *(
                        alert(
                            names.ROUTER_OUTBOX_STUCK,
                            "router",
                            sev,
                            "A Slack message has waited 20m for delivery (limit 10m): "
                            "owners are not being told",
                            STUCK + LADDER[sev],
                        )
                        for sev in ("warning", "critical")
                    ),
                ),
                case("25m15s", names.ROUTER_OUTBOX_STUCK),
            ],
        )
    ],
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_promtool_scenario(scenario: str, rule_files: list[Path]) -> None:
    result = run_rule_tests(rule_files, SCENARIOS[scenario])
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_platform_alert_has_a_firing_and_a_silent_case() -> None:
    firing, silent = alerts_covered(g for groups in SCENARIOS.values() for g in groups)
    platform = set(names.ALERT_NAMES) - {
        names.DATA_PRODUCT_STALE,
        names.PIPELINE_RUN_TOO_LONG,
        names.PIPELINE_MISSED_DEADLINE,
        names.CRITICAL_PIPELINE_FAILED,
        names.PIPELINE_COST_ANOMALY,  # cost alerts: tests/unit/test_alert_rules_cost.py
        names.COST_MODEL_OFF,
        names.DATA_PRODUCT_LIKELY_LATE,  # tests/unit/test_alert_rules_freshness.py
    }
    assert platform <= firing & silent
