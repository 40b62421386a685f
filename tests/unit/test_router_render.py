"""Block Kit rendering: business words from the catalog, Slack's limits, nothing that pings."""

from __future__ import annotations

import json

import pytest
from slack_sdk.models.blocks import Block

from impactwatch.catalog.model import Catalog
from impactwatch.router import notices
from impactwatch.router.model import AlertState, Incident
from impactwatch.router.render import (
    Links,
    RenderContext,
    Rendered,
    render_affected,
    render_incident,
    render_merged,
)
from tests.unit.test_router_support import CATALOG, T0, catalog, texts

HOSTILE = "<!channel> <https://evil.example|click> <@U999> <!subteam^S9>"


def ctx(cat: Catalog | None = None) -> RenderContext:
    return RenderContext(
        cat or catalog(),
        Links(grafana_url="http://grafana:3000", airflow_url="http://airflow:8080"),
    )


def state(subject: str, team: str, **kw: object) -> AlertState:
    values: dict = {
        "fingerprint": f"fp-{subject}-{kw.get('alertname', 'DataProductStale')}",
        "alertname": "DataProductStale",
        "subject_key": subject,
        "team": team,
        "severity": "warning",
        "kind": "freshness",
        "status": "firing",
        "starts_at": T0 - 1020,
        "ends_at": None,
        "labels": {},
        "annotations": {"summary": "stale", "runbook_url": "https://runbooks.example/stale"},
        "generator_url": "http://prometheus:9090/graph",
    }
    values.update(kw)
    return AlertState(**values)


def incident(*alerts: AlertState, key: str = "dataset:market_data", team: str = "markets",
             **kw: object) -> Incident:  # fmt: skip
    inc = Incident(id="inc1", key=key, team=team, opened_at=T0 - 1000, **kw)  # type: ignore[arg-type]
    for a in alerts:
        inc.alerts[a.fingerprint] = a
    return inc


def all_text(rendered: Rendered) -> str:
    return "\n".join([rendered.text, *texts(rendered.blocks)])


def test_the_message_says_in_business_words_what_is_wrong_how_bad_and_who_owns_it() -> None:
    inc = incident(
        state("dataset:market_data", "markets", severity="critical"),
        state("dataset:customer_risk_scores", "risk", labels={}),
        severity="critical",
    )
    out = render_incident(ctx(), inc, T0)
    text = all_text(out)
    assert out.text == "Critical: Market prices — out of date"
    assert "At least 2 h 17 min old against a limit of 2 h" in text  # age vs limit
    assert "Prices from the exchanges." in text  # what it means, from the catalog
    assert "markets (#markets-data)" in text  # owner
    assert "Produced by `market_data_ingest.publish`" in text  # pipeline and task
    assert "Customer risk scores (risk)" in text  # also affected
    buttons = [e for b in out.blocks if b["type"] == "actions" for e in b["elements"]]
    by_label = {b["text"]["text"]: b for b in buttons}
    assert {"Acknowledge", "Snooze 1 h", "Not actionable"} <= set(by_label)
    assert by_label["Acknowledge"]["value"] == "inc1"
    assert by_label["Airflow pipeline"]["url"] == (
        "http://airflow:8080/dags/market_data_ingest/tasks/publish"
    )
    assert by_label["Runbook"]["url"] == "https://runbooks.example/stale"
    assert "var-dataset=market_data" in by_label["Grafana dashboard"]["url"]


def test_hostile_labels_annotations_and_catalog_text_ping_nobody() -> None:
    raw = json.loads(json.dumps(CATALOG))
    raw["datasets"]["market_data"]["title"] = HOSTILE
    raw["datasets"]["market_data"]["description"] = HOSTILE
    raw["teams"]["markets"]["slack_channel"] = "<!here>"
    hostile = state(
        "dataset:market_data",
        "markets",
        alertname=HOSTILE,
        kind="<!everyone>",
        annotations={"summary": HOSTILE, "description": HOSTILE, "runbook_url": "javascript:x"},
        generator_url="https://ok.example/|<!channel>",
        owner_note=HOSTILE,
    )
    dag = state("dag:<!channel>", "markets", alertname="x", labels={"dag_id": "<!channel>"})
    inc = incident(hostile, dag)
    rendered = [
        render_incident(ctx(Catalog.model_validate(raw)), inc, T0),
        render_affected(ctx(Catalog.model_validate(raw)), inc, "markets", T0),
        render_merged(ctx(Catalog.model_validate(raw)), inc, inc),
        notices.render_escalation(ctx(Catalog.model_validate(raw)), inc, 0, T0),
    ]
    for out in rendered:
        valid(out)
        for piece in [out.text, *texts(out.blocks)]:
            for markup in ("<!channel", "<!here", "<!everyone", "<https://evil", "<@U999",
                           "<!subteam^S9"):  # fmt: skip
                assert markup not in piece, (markup, piece)
        mrkdwn = [b["text"] for b in out.blocks if isinstance(b.get("text"), dict)]
        assert all(t.get("verbatim") is True for t in mrkdwn)
    urls = [e.get("url") for b in rendered[0].blocks for e in b.get("elements", []) if "url" in e]
    assert "javascript:x" not in urls


def valid(out: Rendered) -> None:
    """slack_sdk's own Block Kit models accept every block (lengths, counts, required parts)."""
    assert len(out.blocks) <= 50 and len(out.text) <= 4000
    for block in out.blocks:
        Block.parse(block).validate_json()
    ids = [e["action_id"] for b in out.blocks for e in b.get("elements", []) if "action_id" in e]
    assert len(ids) == len(set(ids))


def test_forty_affected_products_fit_slacks_limits() -> None:
    alerts = [state("dataset:market_data", "markets")] + [
        state(f"dataset:product_{n:02d}", f"team_{n % 4}", fingerprint=f"f{n}") for n in range(40)
    ]
    out = render_incident(ctx(), incident(*alerts), T0)
    valid(out)
    valid(render_affected(ctx(), incident(*alerts), "team_1", T0))
    for block in out.blocks:
        if isinstance(block.get("text"), dict):
            assert len(block["text"]["text"]) <= 3000
    assert "… and 25 more" in all_text(out)


def test_resolved_message_has_no_buttons_to_press_and_says_how_long() -> None:
    inc = incident(
        state("dataset:market_data", "markets", status="resolved", ends_at=T0 + 1500),
        status="resolved",
        resolved_at=T0 + 1520,
    )
    out = render_incident(ctx(), inc, T0 + 1600)
    assert out.text == "Resolved: Market prices — out of date"
    assert "Resolved after 42 min." in all_text(out)
    labels = [
        e["text"]["text"]
        for b in out.blocks
        for e in b.get("elements", [])
        if e.get("type") == "button"
    ]
    assert "Acknowledge" not in labels


def test_thread_replies_say_what_changed_once() -> None:
    inc = incident(state("dataset:market_data", "markets"))
    told = notices.snapshot(inc)
    assert notices.thread_reply(ctx(), inc, told, T0) is None
    inc.severity = "critical"
    inc.alerts["x"] = state("dataset:customer_risk_scores", "risk", fingerprint="x")
    reply = notices.thread_reply(ctx(), inc, told, T0)
    assert reply == "Severity raised to *critical*.\nNow also out of date: Customer risk scores."
    told = notices.snapshot(inc)
    inc.status, inc.resolved_at = "resolved", inc.opened_at + 42 * 60
    assert notices.thread_reply(ctx(), inc, told, T0) == ":white_check_mark: Resolved after 42 min."


def test_ack_and_escalation_show_who_and_when() -> None:
    inc = incident(state("dataset:market_data", "markets"), acked_by="U0ALICE", acked_at=T0)
    inc.escalated = 1
    text = all_text(render_incident(ctx(), inc, T0))
    assert "Acknowledged by <@U0ALICE> <!date^1795500000^" in text
    assert "Escalated (1 step(s)) to <!subteam^S0MARKETS>" in text
    escalation = notices.render_escalation(ctx(), incident(state("dataset:market_data", "markets")),
                                           0, T0 + 900)  # fmt: skip
    assert "<!subteam^S0MARKETS> *Escalation 1: Warning: Market prices" in all_text(escalation)


@pytest.mark.parametrize(("ended", "shown"), [(T0 - 3000, "for 10 min"), (None, "still firing")])
def test_digest_lists_warnings_that_did_not_become_incidents(
    ended: float | None, shown: str
) -> None:
    item = {
        "subject_key": "dataset:daily_kpi_report",
        "alertname": "DataProductStale",
        "starts_at": T0 - 3600,
        "ended_at": ended,
    }
    out = notices.render_digest(ctx(), "reporting", [item], T0 - 86400, T0)
    assert out.text == "Daily digest for reporting: 1 warning(s)"
    assert "Daily KPI report: `DataProductStale`" in all_text(out) and shown in all_text(out)


def test_thread_reply_names_stale_products_apart_from_other_problems() -> None:
    inc = incident(state("dag:market_data_ingest", "markets", kind="failure"),
                   key="dag:market_data_ingest")  # fmt: skip
    told = notices.snapshot(inc)
    inc.alerts["p"] = state("dataset:market_data", "markets", fingerprint="p")
    inc.alerts["q"] = state("dag:risk_scoring", "risk", fingerprint="q", kind="duration")
    reply = notices.thread_reply(ctx(), inc, told, T0)
    assert (
        reply == "Now also out of date: Market prices.\nNow also affected: Pipeline `risk_scoring`."
    )
