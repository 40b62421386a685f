"""`impactwatch incidents` against a real router DB the router itself wrote (SQLite file):
open incidents, most costly first; a missing or outdated DB is a one-line error."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

from impactwatch.catalog.loader import load_catalog
from impactwatch.cli import main
from impactwatch.router.payload import parse_notification
from impactwatch.router.service import RouterService
from impactwatch.router.settings import RouterSettings
from impactwatch.router.sinks import ConsoleSink
from tests.integration.helpers import EXAMPLE_CATALOG
from tests.unit.test_router_support import alert, body

pytestmark = pytest.mark.integration


def routed(tmp_path: Path, *alerts: dict) -> str:
    """A router DB holding the incidents these alerts open (each its own notification)."""
    url = f"sqlite:///{tmp_path / 'router.db'}"
    settings = RouterSettings(state_db=url, jsonl_path=str(tmp_path / "messages.jsonl"))
    sink = ConsoleSink(settings.jsonl_path, stream=open("/dev/null", "w"))  # noqa: SIM115
    service = RouterService(settings, load_catalog(EXAMPLE_CATALOG), sink=sink)
    try:
        for one in alerts:
            service.handle(parse_notification(body([one]), time.time()))
    finally:
        service.close()
    return url


def test_open_incidents_are_listed_most_costly_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    now = time.time()
    url = routed(
        tmp_path,
        # oldest and most severe, but fewer and lesser products downstream: ranked after
        alert(
            "DataProductStale",
            severity="critical",
            starts=now - 7200,
            dataset="transactions_warehouse",
            team="platform",
        ),
        # the market outage: market data and everything downstream of it
        alert(
            "PipelineRunFailed",
            kind="failure",
            severity="warning",
            starts=now - 60,
            dag_id="market_data_ingest",
            team="markets",
        ),
        alert(
            "DataProductStale",
            severity="warning",
            starts=now - 600,
            dataset="payments_reconciled",
            team="finance",
        ),
    )
    args = ["incidents", "--state-db", url, "--catalog", str(EXAMPLE_CATALOG)]
    assert main([*args, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(r["incident"], r["team"]) for r in listed] == [
        ("market_data_ingest — pipeline run failed", "markets"),
        ("Transactions warehouse — out of date", "platform"),
    ]  # reconciled payments are downstream of the warehouse: folded into its incident
    assert {"finance", "reporting"} <= set(listed[1]["teams"])
    scores = [r["score"] for r in listed]
    assert scores == sorted(scores, reverse=True) and scores[0] > 10
    top = listed[0]
    assert {"markets", "risk", "compliance"} <= set(top["teams"])
    assert top["at_stake"]["Customer risk scores"].startswith("Trades cannot be approved")
    assert main([*args, "--limit", "1"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("  1. [score ") and "market_data_ingest" in text
    assert "Transactions warehouse" not in text


def test_a_missing_or_outdated_db_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere.db"
    assert main(["incidents", "--state-db", f"sqlite:///{missing}"]) == 2
    assert f"no router DB at {missing}" in capsys.readouterr().err
    assert not missing.exists()  # a listing never creates a DB
    url = routed(tmp_path)
    with sqlite3.connect(tmp_path / "router.db") as conn:
        conn.execute("UPDATE impactwatch_router_alembic_version SET version_num = 'old'")
    assert main(["incidents", "--state-db", url]) == 2
    err = capsys.readouterr().err
    assert "at revision old" in err and "Traceback" not in err
