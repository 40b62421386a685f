"""The router's PostgreSQL paths (BEGIN and locks in one round trip, writes and COMMIT batched
in pipeline mode, autocommit reads and claims) decide exactly what its SQLite paths decide: one
story of notifications, played on both, leaves the same rows and the same messages."""

from __future__ import annotations

import io
import itertools
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from impactwatch.router.payload import parse_notification
from impactwatch.router.service import RouterService
from impactwatch.router.settings import RouterSettings
from impactwatch.router.sinks import ConsoleSink
from impactwatch.router.tables import alert_t, digest_item_t, incident_t, message_t
from tests.support.postgres import create_database, drop_database
from tests.unit.test_router_support import T0, Clock, alert, catalog
from tests.unit.test_router_support import body as make_body

pytestmark = pytest.mark.integration
# Differ from run to run (Slack's ts, tokens) but not between the two databases' decisions.
VOLATILE = {"lease_owner", "lease_until", "ts", "thread_ts", "channel_id", "post_token",
            "reply_token", "token"}  # fmt: skip
PLATFORM = '{}:{team="platform"}'


def story() -> Iterator[tuple[float, bytes]]:
    """(seconds after T0, webhook body): folding, merges of posted incidents, several new
    alerts in one notification, digest warnings, muting, escalation, resolution."""
    groups = (f"{{}}:{{story={n}}}" for n in itertools.count())

    def body(alerts: list[dict[str, Any]], groupKey: str | None = None) -> bytes:
        return make_body(alerts, groupKey=groupKey or next(groups))

    risk = {"dataset": "customer_risk_scores", "team": "risk"}
    market = {"dataset": "market_data", "team": "markets"}
    down = alert("SchedulerDown", kind="platform", team="platform")
    pool = alert("PoolFull", kind="platform", team="platform")
    yield 0, body([alert(**risk)])
    yield 10, body([alert(**market), alert("DataProductLate", kind="deadline", **market)])
    yield 20, body([alert(dataset="regulatory_submission", team="compliance"), alert(**risk)])
    yield 30, body([alert(dataset="daily_kpi_report", team="reporting")])
    yield 40, body([down, pool], groupKey=PLATFORM)
    yield 50, body([down], groupKey=PLATFORM)
    yield 60, body([alert(severity="critical", **market)])
    yield 70, body([alert(**market), alert(**risk)])  # a repeat: changes nothing
    yield 900, body([alert(status="resolved", **risk)])
    yield 1000, body([alert(status="resolved", **market)])
    gone = alert("SchedulerDown", kind="platform", team="platform", status="resolved")
    yield 1100, body([gone], groupKey=PLATFORM)


def play(state_db: str, tmp: Path) -> tuple[dict[str, list[Any]], list[dict[str, Any]]]:
    clock = Clock()
    ids = itertools.count(1)
    settings = RouterSettings(
        state_db=state_db, settle_seconds=0, channel_interval=0, jsonl_path=str(tmp / "out.jsonl")
    )
    service = RouterService(
        settings,
        catalog(),
        sink=ConsoleSink(settings.jsonl_path, io.StringIO()),
        clock=clock,
        new_id=lambda: f"inc{next(ids):03d}",
    )
    try:
        for at, raw in story():
            clock.now = T0 + at
            service.handle(parse_notification(raw, clock.now))
            service.tick()
            assert service.worker.drain(20)
        rows = {}
        with service.store.read() as conn:
            for table, order in (
                (incident_t, incident_t.c.id),
                (alert_t, alert_t.c.fingerprint),
                (message_t, message_t.c.key),
                (digest_item_t, digest_item_t.c.k),
            ):
                found = conn.execute(select(table).order_by(order)).mappings()
                rows[table.name] = [
                    {k: v for k, v in r.items() if k not in VOLATILE and k != "id"} for r in found
                ]
    finally:
        service.close()
    sent = [json.loads(line) for line in Path(settings.jsonl_path).read_text().splitlines()]
    return rows, [{k: v for k, v in m.items() if k not in VOLATILE} for m in sent]


def test_postgresql_and_sqlite_decide_and_send_the_same(pg_base_url: str, tmp_path: Path) -> None:
    name = f"impactwatch_router_same_{uuid.uuid4().hex[:8]}"
    pg = create_database(pg_base_url, name).replace("postgresql://", "postgresql+psycopg://")
    try:
        (tmp_path / "pg").mkdir()
        (tmp_path / "lite").mkdir()
        on_pg = play(pg, tmp_path / "pg")
        on_sqlite = play(f"sqlite:///{tmp_path / 'lite' / 'router.db'}", tmp_path / "lite")
    finally:
        drop_database(pg_base_url, name)
    assert on_pg[0] == on_sqlite[0]
    assert on_pg[1] == on_sqlite[1]
    statuses = {r["key"]: r["status"] for r in on_pg[0]["rt_incident"]}
    assert "merged" in statuses.values() and "resolved" in statuses.values()  # the paths ran
    assert any(r["status"] == "suppressed" for r in on_pg[0]["rt_alert"])
    assert on_pg[0]["rt_digest_item"], "a held warning"
    assert any(m["key"].endswith(":escalation:0") for m in on_pg[0]["rt_message"])
