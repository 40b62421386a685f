"""The router end to end on an SQLite state DB, delivering to the console and JSON Lines."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import Table, create_engine, func, inspect, select

from impactwatch.router import outbox as outbox_module
from impactwatch.router.metrics import RouterCollector
from impactwatch.router.model import Action
from impactwatch.router.payload import parse_notification
from impactwatch.router.service import RouterService
from impactwatch.router.settings import RouterSettings
from impactwatch.router.sinks import ConsoleSink
from impactwatch.router.tables import alert_t, incident_t, message_t, metadata
from tests.unit.test_router_support import T0, Clock, alert, body, catalog, notification


class Router:
    def __init__(self, tmp: Path, clock: Clock, **settings: object) -> None:
        self.tmp, self.clock = tmp, clock
        self.console = io.StringIO()
        self.settings = RouterSettings(
            state_db=f"sqlite:///{tmp / 'router.db'}",
            settle_seconds=0,
            channel_interval=0,
            jsonl_path=str(tmp / "messages.jsonl"),
            **settings,
        )
        self.service = RouterService(
            self.settings,
            catalog(),
            sink=ConsoleSink(self.settings.jsonl_path, self.console),
            clock=clock,
        )

    def send(self, *alerts: dict) -> dict:
        result = self.service.handle(notification(*alerts, now=self.clock.now))
        assert self.service.worker.drain(10)
        return result

    def lines(self) -> list[dict]:
        path = Path(self.settings.jsonl_path)
        return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []

    def posts(self) -> list[dict]:
        return [x for x in self.lines() if x["method"] == "chat.postMessage"]

    def count(self, table: Table) -> int:
        with self.service.store.read() as conn:
            return conn.execute(select(func.count()).select_from(table)).scalar_one()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def router(tmp_path: Path, clock: Clock) -> Iterator[Router]:
    r = Router(tmp_path, clock)
    yield r
    r.service.close()


MARKET = {"dataset": "market_data", "team": "markets"}


def test_without_a_token_messages_go_to_the_console_and_a_jsonl_file(router: Router) -> None:
    router.send(alert(**MARKET))
    (post,) = router.lines()
    assert post["method"] == "chat.postMessage" and post["channel"] == "#markets-data"
    assert post["text"] == "Warning: Market prices — out of date"
    assert "Warning: Market prices — out of date" in router.console.getvalue()
    assert "[Acknowledge]" in router.console.getvalue()


def test_a_failing_webhook_transaction_stores_nothing(
    router: Router, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_a: object, **_k: object) -> int:
        raise RuntimeError("disk full")

    monkeypatch.setattr(outbox_module, "plan", broken)
    with pytest.raises(RuntimeError):
        router.service.handle(notification(alert(**MARKET)))
    assert (router.count(alert_t), router.count(incident_t), router.count(message_t)) == (0, 0, 0)


def test_repeats_send_nothing_and_changes_edit_in_place_with_one_thread_reply(
    router: Router, clock: Clock
) -> None:
    router.send(alert(**MARKET))
    router.send(alert(**MARKET))  # repeat_interval, or the HA peer
    assert len(router.lines()) == 1
    clock.advance(60)
    # Three changes before the worker runs collapse into one update and one reply.
    for note in (
        alert(**MARKET, severity="critical"),
        alert(dataset="customer_risk_scores", team="risk"),
        alert(dataset="regulatory_submission", team="compliance"),
    ):
        router.service.handle(notification(note, now=clock.now))
    assert router.service.worker.drain(10)
    methods = [(x["method"], x["channel"], bool(x.get("thread_ts"))) for x in router.lines()]
    assert sorted(methods[1:]) == [
        ("chat.postMessage", "#compliance-alerts", False),
        ("chat.postMessage", "#data-incidents", False),  # warning -> critical: escalate at once
        ("chat.postMessage", "#markets-data", True),
        ("chat.postMessage", "#risk-alerts", False),
        ("chat.update", "#markets-data", False),
    ]
    reply = next(x for x in router.lines() if x.get("thread_ts"))
    assert reply["text"] == (
        "Severity raised to *critical*.\n"
        "Now also out of date: Customer risk scores, Regulatory submission."
    )
    clock.advance(42 * 60)
    router.send(
        alert(**MARKET, status="resolved"), alert(**MARKET, severity="critical", status="resolved")
    )
    router.send(alert(dataset="customer_risk_scores", team="risk", status="resolved"))
    router.send(alert(dataset="regulatory_submission", team="compliance", status="resolved"))
    replies = [x["text"] for x in router.posts() if x.get("thread_ts")]
    assert replies[-1] == ":white_check_mark: Resolved after 43 min."


def test_a_downstream_message_already_posted_becomes_the_affected_notice(router: Router) -> None:
    router.send(alert(dataset="customer_risk_scores", team="risk"))
    router.send(alert(**MARKET))
    posts = [(x["channel"], x["text"]) for x in router.posts()]
    assert posts == [
        ("#risk-alerts", "Warning: Customer risk scores — out of date"),
        ("#markets-data", "Warning: Market prices — out of date"),
    ]
    risk_update = [x for x in router.lines() if x["method"] == "chat.update"][-1]
    assert risk_update["channel"] == "#risk-alerts"
    assert risk_update["text"] == "Affected by an upstream problem: Market prices — out of date"


def test_restart_mid_incident_sends_no_duplicate_and_escalates_on_time(
    tmp_path: Path, clock: Clock
) -> None:
    first = Router(tmp_path, clock)
    first.send(alert(**MARKET))
    first.service.close()
    clock.advance(10 * 60)
    second = Router(tmp_path, clock)
    try:
        second.send(alert(**MARKET))  # Alertmanager re-sends after the restart
        assert len(second.posts()) == 1
        second.service.tick()
        assert len(second.posts()) == 1  # 10 of 15 minutes: not yet
        clock.advance(5 * 60)
        second.service.tick()
        assert second.service.worker.drain(10)
        escalation = second.posts()[-1]
        assert escalation["channel"] == "#data-incidents"
        assert escalation["text"] == "Escalation 1: Market prices — out of date"
        assert "<!subteam^S0MARKETS>" in json.dumps(escalation["blocks"])
        second.service.tick()
        assert second.service.worker.drain(10) and len(second.posts()) == 2  # fired once
    finally:
        second.service.close()


def test_acknowledge_stops_escalation_and_shows_who(router: Router, clock: Clock) -> None:
    router.send(alert(**MARKET))
    incident_id = router.service.handle(notification(alert(**MARKET, severity="critical")))[
        "incidents"
    ][0]
    assert router.service.act(Action("ack", incident_id, "U0ALICE")) == "ok"
    assert router.service.act(Action("ack", incident_id, "U0BOB")) == "noop"
    assert router.service.worker.drain(10)
    clock.advance(3 * 3600)
    router.service.tick()
    assert router.service.worker.drain(10)
    assert [x["channel"] for x in router.posts()].count("#data-incidents") == 1  # the raise only
    text = json.dumps([x["blocks"] for x in router.lines()])
    assert "Acknowledged by <@U0ALICE>" in text
    assert any("escalation stopped" in x["text"] for x in router.posts())


def test_snooze_delays_escalation_and_not_actionable_is_counted_per_rule(
    router: Router, clock: Clock
) -> None:
    router.send(alert(**MARKET), alert("DataProductLate", kind="deadline", **MARKET))
    with router.service.store.read() as conn:
        incident_id = conn.execute(select(incident_t.c.id)).scalar_one()
    assert router.service.act(Action("snooze", incident_id, "U0ALICE")) == "ok"
    clock.advance(30 * 60)
    router.service.tick()
    assert router.service.worker.drain(10)
    assert all(x["channel"] != "#data-incidents" for x in router.posts())
    clock.advance(31 * 60)
    router.service.tick()
    assert router.service.worker.drain(10)
    assert [x["channel"] for x in router.posts()].count("#data-incidents") == 1
    for user in ("U0ALICE", "U0ALICE", "U0BOB"):
        assert router.service.act(Action("not_actionable", incident_id, user)) == "ok"
    registry = CollectorRegistry()
    registry.register(RouterCollector(router.service.stats, router.service.store, clock))
    sample = "impactwatch_router_not_actionable_total"
    labels = {"alertname": "DataProductLate", "team": "markets"}
    assert registry.get_sample_value(sample, labels) == 2.0
    assert registry.get_sample_value("impactwatch_router_escalations_total", {"team": "markets"})


def test_digest_teams_get_one_message_a_day_instead_of_each_warning(
    tmp_path: Path,
) -> None:
    clock = Clock(T0)  # 06:00 UTC: before the 09:00 digest
    router = Router(tmp_path, clock, digest_at="09:00 UTC")
    try:
        router.send(alert(dataset="daily_kpi_report", team="reporting"))
        router.send(alert("Another", dataset="daily_kpi_report", team="reporting"))
        router.service.tick()  # yesterday's digest had nothing: no message
        assert router.service.worker.drain(10) and router.posts() == []
        clock.advance(3 * 3600 + 60)
        router.service.tick()
        router.service.tick()
        assert router.service.worker.drain(10)
        (digest,) = router.posts()
        assert digest["channel"] == "#reporting"
        assert digest["text"] == "Daily digest for reporting: 2 warning(s)"
    finally:
        router.service.close()


def test_a_state_db_from_before_alert_groups_is_upgraded_in_place(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'router.db'}"
    old = create_engine(url)
    metadata.create_all(old)
    with old.begin() as conn:  # the schema as an earlier version made it
        conn.exec_driver_sql("DROP INDEX rt_alert_group")
        conn.exec_driver_sql("ALTER TABLE rt_alert DROP COLUMN group_key")
        for later in (
            "pending_since",
            "moved_from",
            "moved_code",
        ):  # added by revision 5b7e1c9d2a40
            conn.exec_driver_sql(f"ALTER TABLE rt_message DROP COLUMN {later}")
    old.dispose()
    router = Router(tmp_path, Clock())
    try:
        columns = inspect(router.service.store.engine).get_columns("rt_alert")
        assert "group_key" in {c["name"] for c in columns}
        indexes = inspect(router.service.store.engine).get_indexes("rt_alert")
        assert "rt_alert_group" in {i["name"] for i in indexes}
        router.send(alert(**MARKET))
        assert len(router.posts()) == 1
    finally:
        router.service.close()


def test_an_alert_muted_in_alertmanager_is_found_by_its_group_and_shown_muted(
    router: Router,
) -> None:
    # Platform alerts carry no data product or pipeline: one Alertmanager group (the team),
    # one incident per rule. The second notification names only one of them.
    group = '{}:{team="platform"}'
    down = alert("SchedulerDown", kind="platform", team="platform")
    pool = alert("PoolFull", kind="platform", team="platform")
    router.service.handle(parse_notification(body([down, pool], groupKey=group), T0))
    assert router.service.worker.drain(10)
    result = router.service.handle(parse_notification(body([down], groupKey=group), T0))
    assert result["alerts"] == {"duplicate": 1, "suppressed": 1}
    assert router.service.worker.drain(10)
    with router.service.store.read() as conn:
        rows = conn.execute(select(alert_t.c.alertname, alert_t.c.status)).all()
        incidents = dict(conn.execute(select(incident_t.c.key, incident_t.c.status)).all())
    assert sorted(rows) == [("PoolFull", "suppressed"), ("SchedulerDown", "firing")]
    assert incidents == {"rule:PoolFull": "resolved", "rule:SchedulerDown": "open"}
    (update,) = [x for x in router.lines() if x["method"] == "chat.update"]
    assert "1 alert(s) silenced or inhibited in Alertmanager, not resolved." in json.dumps(
        update["blocks"]
    )
