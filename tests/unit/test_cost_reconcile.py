"""Reconciliation with the bill, pure parts: Cost Explorer pages, the comparison, AWS errors in
one line, the tables people read, and the catalog's cost references."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

from impactwatch.catalog.loader import load_catalog, parse_catalog
from impactwatch.catalog.model import Catalog
from impactwatch.collector.cost.aws import aws_error_reason, describe_aws_error, scrub
from impactwatch.collector.cost.reconcile import (
    CostExplorerAnswerError,
    parse_pages,
    reconcile,
    window,
)
from impactwatch.collector.cost.report import rates_table, reconciliation_table

D = Decimal
DAY1, DAY2 = date(2026, 11, 22), date(2026, 11, 23)
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "catalog.yaml"


def result(day: date, groups: dict[str, str], estimated: bool = False) -> dict:
    return {
        "TimePeriod": {"Start": day.isoformat(), "End": "x"},
        "Total": {},
        "Groups": [
            {"Keys": [key], "Metrics": {"UnblendedCost": {"Amount": amount, "Unit": "USD"}}}
            for key, amount in groups.items()
        ],
        "Estimated": estimated,
    }


def test_window_is_complete_utc_days_before_today() -> None:
    assert window(date(2026, 11, 24), 1, 1) == [DAY2]
    assert window(date(2026, 11, 24), 2, 1) == [DAY1, DAY2]
    assert window(date(2026, 11, 24), 1, 2) == [DAY1]


def test_pages_by_tag_value_with_untagged_cost() -> None:
    tag = "airflow_dag_id$"
    first = result(DAY1, {f"{tag}heavy_etl": "10.50", tag: "3"})
    second = result(DAY2, {f"{tag}heavy_etl": "0.1234567890123", f"{tag}typo_dag": "2"}, True)
    pages = [{"ResultsByTime": [first]}, {"ResultsByTime": [second]}]
    actual = parse_pages(pages, "airflow_dag_id", "UnblendedCost")
    assert actual.by_tag == {
        "heavy_etl": {DAY1: D("10.50"), DAY2: D("0.1234567890123")},
        "": {DAY1: D(3)},
        "typo_dag": {DAY2: D(2)},
    }
    assert actual.currency == "USD" and actual.estimated


def test_an_answer_of_the_wrong_shape_is_named() -> None:
    with pytest.raises(CostExplorerAnswerError, match="TimePeriod"):
        parse_pages([{"ResultsByTime": [{"Groups": []}]}], "t", "UnblendedCost")
    bad = {"ResultsByTime": [result(DAY1, {"t$x": "1"})]}
    bad["ResultsByTime"][0]["Groups"][0]["Metrics"]["UnblendedCost"]["Amount"] = "lots"
    with pytest.raises(CostExplorerAnswerError, match="UnblendedCost amount"):
        parse_pages([bad], "t", "UnblendedCost")


def test_reconcile_per_dag_per_day_with_the_unattributed_rest() -> None:
    pages = [{"ResultsByTime": [
        result(DAY1, {"k$heavy_etl": "23", "k$": "5", "k$typo_dag": "1", "k$quiet": "4"}),
        result(DAY2, {"k$heavy_etl": "23"}),
    ]}]  # fmt: skip
    actual = parse_pages(pages, "k", "UnblendedCost")
    estimates = {
        "heavy_etl": {DAY1: D(10), DAY2: D(10)},
        "risk": {DAY1: D(4)},  # no tag on its resources: nothing billed to compare
    }
    rec = reconcile(actual, estimates, [DAY1, DAY2], known_dags=["quiet", "nothing"])
    rows = {r.dag_id: r for r in rec.rows}
    assert set(rows) == {"heavy_etl", "risk", "quiet"}  # "nothing": neither billed nor run
    assert (rows["heavy_etl"].actual, rows["heavy_etl"].estimated) == (D(23), D(10))
    assert rows["heavy_etl"].ratio == D("2.3")
    assert rows["risk"].ratio is None and rows["risk"].estimated == D(2)
    assert rows["quiet"].actual == D(2) and rows["quiet"].ratio is None  # in the catalog
    assert rec.unattributed == D(3)  # (5 untagged + 1 unknown tag value) over 2 days
    assert rec.days == (DAY1, DAY2)
    table = reconciliation_table(rec, "USD")
    assert "AWS bill vs estimate, UTC 2026-11-22..2026-11-23" in table
    assert "heavy_etl       23.00" in table and "2.30x" in table
    assert "(unattributed)  3.00" in table


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("ThrottlingException", "throttled"),
        ("LimitExceededException", "throttled"),
        ("AccessDeniedException", "access_denied"),
        ("UnrecognizedClientException", "access_denied"),
        ("DataUnavailableException", "unavailable"),
        ("ValidationException", "invalid"),
        ("SomethingNew", "other"),
    ],
)
def test_aws_errors_have_one_reason(code: str, reason: str) -> None:
    exc = ClientError({"Error": {"Code": code, "Message": "m"}}, "GetCostAndUsage")
    assert aws_error_reason(exc) == reason


def test_aws_errors_without_a_code() -> None:
    assert aws_error_reason(NoCredentialsError()) == "access_denied"
    assert aws_error_reason(EndpointConnectionError(endpoint_url="https://x")) == "unavailable"
    assert aws_error_reason(ValueError("x")) == "other"


def test_one_line_and_never_a_key() -> None:
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    exc = ClientError(
        {
            "Error": {
                "Code": "AccessDeniedException",
                "Message": f"User AKIAIOSFODNN7EXAMPLE with {secret} is not authorized\nmore",
            }
        },
        "GetCostAndUsage",
    )
    text = describe_aws_error(exc)
    assert text.startswith("AccessDeniedException: User [redacted] with [redacted] is not")
    assert "\n" not in text and "AKIA" not in text and secret not in text
    assert scrub("arn:aws:iam::123456789012:user/ci") == "arn:aws:iam::123456789012:user/ci"


def test_the_rates_table_shows_how_each_rate_is_derived() -> None:
    lines = rates_table(load_catalog(EXAMPLE)).splitlines()
    heavy = next(line for line in lines if line.startswith("pool heavy_etl"))
    assert heavy.split()[2:4] == ["0.033773", "0.003653"]  # 8 x 0.033773 + 64 x 0.003653: 0.504
    assert heavy.endswith("r5.2xlarge: 0.504/h, 8 vCPU, 64 GiB, split as cost.rates")
    reporting = next(line for line in lines if line.startswith("queue reporting"))
    assert reporting.split()[2:4] == ["0.038400", "0.002400"]
    assert reporting.endswith("m5.xlarge: 0.192/h, 4 vCPU, 16 GiB, 80% to CPU")
    unresolved = Catalog.model_validate(
        {"cost": {"instance_types": {"x.big": 1}, "pool_rates": {"p": {"instance_type": "x.big"}}}}
    )
    assert "x.big: shape unknown, so cost.rates" in rates_table(unresolved)


def test_catalog_check_names_unpriced_instance_types_and_bad_task_keys() -> None:
    text = """\
cost:
  instance_types:
    r5.2xlarge: 0.504
  pool_rates:
    heavy_etl: {instance_type: r5.2xlarg}
  tasks:
    just_a_dag: {cpu: 1, memory_gb: 1}
"""
    _, problems = parse_catalog(text, "c.yaml")
    assert [(p.line, p.message) for p in problems] == [
        (5, "cost.pool_rates.heavy_etl.instance_type: instance type 'r5.2xlarg' has no price"),
        (7, "cost.tasks.just_a_dag: 'just_a_dag' does not name a task"),
    ]
    assert problems[0].fix.startswith("did you mean 'r5.2xlarge'?")
    assert "dag_id.task_id" in problems[1].fix
