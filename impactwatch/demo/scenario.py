"""The demo's story, on a clock compressed to about five minutes (pure data, no I/O).

The example catalog speaks in hours ("market prices at most 2h old"); the demo catalog is the
same file with the freshness limits and escalation delays of the story's data products cut to
seconds, so that staleness, escalation and recovery happen while you watch:

    0:00  a normal morning: every pipeline runs and succeeds; heavy ETL sets its cost baseline
    0:45  market data ingestion fails (its validation step, every try): the markets team hears
          of the failed pipeline; teams downstream see "affected by an upstream problem"
    ~1:20 market prices are stale: a warning; customer risk scores go stale too and fold in
    ~2:20 still stale at twice the limit: the warning becomes critical and escalates at once
    2:30  the heavy nightly ETL burns twenty times its usual CPU: a cost anomaly for the
          platform team ("The latest nightly heavy etl run cost $2.10, usually $0.45": one
          second of the story is priced as an hour)
    ~2:40 the reports built on risk scores go stale and fold into the same incident
    3:45  market data ingestion is fixed; risk scoring and the reports run again; the heavy
          ETL is back to its usual cost
    ~4:00 the incidents resolve in Slack ("Resolved after 3 min")
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from impactwatch.devtools.airflow_home import RunSpec

# Data product -> freshness in the demo (seconds) and tier where it changes. Market prices
# become `high` so the story shows a warning that turns critical at twice the limit.
FRESHNESS: dict[str, int] = {
    "market_data": 60,
    "customer_risk_scores": 60,
    "regulatory_submission": 120,
    "daily_kpi_report": 120,
    "executive_pack": 120,
}
TIERS: dict[str, str] = {"market_data": "high"}
ESCALATE_AFTER = "90s"  # first escalation step of every team
HEAVY_CPU_BASELINE = 0.3  # CPU seconds of transform_ledger on a normal night
HEAVY_CPU_SPIKE = 6.0
HEAVY_BASELINE_RUNS = 6  # the anomaly rule compares with the median of at least 5 earlier runs
# One second of the story stands for an hour: hourly prices become prices per second, so a run
# costs what it would if it had taken hours (dollars, not fractions of a cent).
PRICE_KEYS = ("cpu_hour", "memory_gb_hour", "hourly_price")
PRICE_SCALE = 3600


def demo_catalog(example: dict[str, Any]) -> dict[str, Any]:
    """The example catalog (as parsed YAML) with the story's limits in seconds."""
    catalog = {k: v for k, v in example.items()}
    datasets = {name: dict(ds) for name, ds in catalog["datasets"].items()}
    for name, seconds in FRESHNESS.items():
        datasets[name]["freshness"] = f"{seconds}s"
    for name, tier in TIERS.items():
        datasets[name]["tier"] = tier
    catalog["datasets"] = datasets
    teams = {}
    for name, team in catalog["teams"].items():
        team = dict(team)
        steps = [dict(s) for s in team.get("escalation", [])]
        if steps:
            steps[0]["after"] = ESCALATE_AFTER
            team["escalation"] = steps[:1]
        teams[name] = team
    catalog["teams"] = teams
    catalog["cost"] = _scaled_prices(catalog.get("cost", {}))
    return catalog


def _scaled_prices(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            k: round(float(v) * PRICE_SCALE, 6) if k in PRICE_KEYS else _scaled_prices(v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_scaled_prices(v) for v in node]
    return node


@dataclass(frozen=True)
class Step:
    """At `at` seconds after the story starts, make these runs (in order, one Airflow process)."""

    at: float
    title: str
    runs: list[RunSpec] = field(default_factory=list)


def _heavy(cpu_seconds: float) -> RunSpec:
    return RunSpec("nightly_heavy_etl", conf={"cpu_seconds": cpu_seconds}, expect="success")


def _fresh_chain() -> list[RunSpec]:
    """Market data, then what the scheduler would run from it, then the morning reports."""
    return [
        RunSpec("market_data_ingest", expect="success"),
        RunSpec("risk_scoring", run_type="asset_triggered", expect="success"),
        RunSpec("regulatory_submission", expect="success"),
        RunSpec("morning_reporting", expect="success"),
    ]


def story(scale: float = 1.0) -> list[Step]:
    """The scripted steps; `scale` < 1 compresses the clock (tests), > 1 stretches it."""
    steps = [
        Step(
            0,
            "a normal morning: every pipeline runs and succeeds",
            [
                *_fresh_chain(),
                RunSpec("payments_reconciliation", expect="success"),
                *[_heavy(HEAVY_CPU_BASELINE) for _ in range(HEAVY_BASELINE_RUNS)],
            ],
        ),
        Step(
            45,
            "market data ingestion fails: its validation rejects every try",
            [
                RunSpec(
                    "market_data_ingest",
                    conf={"fail_always": ["validate_market_data"]},
                    expect="failed",
                )
            ],
        ),
        Step(
            150,
            "the heavy nightly ETL burns far more CPU than usual: a cost spike",
            [_heavy(HEAVY_CPU_SPIKE)],
        ),
        Step(225, "market data is fixed: ingestion, risk scoring and reports run again"),
    ]
    # ... and the next night's heavy ETL costs what it usually does
    steps[-1] = Step(steps[-1].at, steps[-1].title, [*_fresh_chain(), _heavy(HEAVY_CPU_BASELINE)])
    return [Step(s.at * scale, s.title, s.runs) for s in steps]


@dataclass(frozen=True)
class RootCause:
    """One root cause of the story and the most top-level Slack messages it may take: the
    owner's incident, one "affected" message per downstream team, escalations."""

    name: str
    markers: tuple[str, ...]  # words of the headlines of its incidents
    max_top_level: int


ROOT_CAUSES = (
    # The owner's incident (#markets-data), risk, compliance and reporting told they are
    # affected, one escalation to #data-incidents: 5 (before issue 15: 7, in two incidents).
    RootCause("market data outage", ("market_data_ingest", "Market prices"), 5),
    # The platform team's incident and at most one escalation.
    RootCause("heavy ETL cost spike", ("nightly_heavy_etl",), 2),
)

# How long the demo keeps watching after the last step for the incident to resolve.
SETTLE_SECONDS = 90.0
# ... and the router has written nothing for this long (Alertmanager's group interval + 5 s).
QUIET_SECONDS = 15.0
