"""Block Kit messages for incidents, in business words from the catalog. Pure.

Every string from labels, annotations or the catalog is escaped (`escape`); text objects carry
`verbatim: true`; URLs ride in link buttons. The fallback `text` (what notifications show) is
escaped the same way.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from impactwatch.catalog.model import Catalog
from impactwatch.contract.alerts import DAG_ID
from impactwatch.router import escape as esc
from impactwatch.router import failure_words as fw
from impactwatch.router import impact as im
from impactwatch.router import wording as w
from impactwatch.router.failures import FailureReport
from impactwatch.router.model import AlertState, Incident
from impactwatch.router.routing import Lineage, Subject

MAX_SECTION = 2900  # Block Kit allows 3000 characters in a section's text
MAX_LIST = 15
ACK, SNOOZE, NOT_ACTIONABLE = "iw_ack", "iw_snooze", "iw_not_actionable"
ACTIONS = (ACK, SNOOZE, NOT_ACTIONABLE)


@dataclass(frozen=True)
class Links:
    grafana_url: str | None = None
    grafana_dashboard: str = (
        "/d/impactwatch-data-products/data-products?var-team={team}&var-dataset={dataset}"
    )
    airflow_url: str | None = None


@dataclass
class RenderContext:
    catalog: Catalog
    links: Links = Links()
    fallback_channel: str = "#impactwatch"
    groups: Mapping[str, str] = field(default_factory=dict)  # user group handle -> id
    snooze_seconds: float = 3600.0
    lineage: Lineage = field(init=False)

    def __post_init__(self) -> None:
        self.lineage = Lineage(self.catalog)

    def channel_of(self, team: str) -> str:
        found = self.catalog.teams.get(team)
        return found.slack_channel if found is not None else self.fallback_channel


@dataclass(frozen=True)
class Rendered:
    text: str  # fallback for notifications, escaped
    blocks: list[dict[str, Any]]

    def digest(self) -> str:
        data = json.dumps([self.text, self.blocks], sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(data.encode()).hexdigest()


def mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text, "verbatim": True}


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": mrkdwn(fit(text))}


def context(*lines: str) -> dict[str, Any]:
    return {"type": "context", "elements": [mrkdwn(fit(line, 2900)) for line in lines[:10]]}


def fit(text: str, limit: int = MAX_SECTION) -> str:
    """Cut at a line end so escapes and `<!date…>` tokens stay whole."""
    if len(text) <= limit:
        return text
    kept, size = [], 0
    for line in text.split("\n"):
        if size + len(line) + 1 > limit - 40:
            break
        kept.append(line)
        size += len(line) + 1
    return "\n".join(kept) + "\n… (cut to fit Slack)"


def bullets(lines: list[str], total: int) -> str:
    shown = "\n".join(f"• {line}" for line in lines[:MAX_LIST])
    if total > MAX_LIST:
        shown += f"\n… and {total - MAX_LIST} more"
    return shown


def _button(action: str, label: str, value: str, style: str | None = None) -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "action_id": action,
        "text": {"type": "plain_text", "text": label},
        "value": value,
    }
    if style:
        button["style"] = style
    return button


def _link(action: str, label: str, url: str) -> dict[str, Any]:
    return {
        "type": "button",
        "action_id": action,
        "text": {"type": "plain_text", "text": label},
        "url": url,
    }


def link_buttons(
    ctx: RenderContext, incident: Incident, failure: FailureReport | None = None
) -> list[dict[str, Any]]:
    """Grafana, Airflow, failed try's log and run, runbook and alert-source buttons; only
    well-formed http(s) URLs."""
    out: list[dict[str, Any]] = []
    subject = incident.subject
    alert = w.main_alert(incident)
    dag = (alert.labels.get(DAG_ID) if alert else "") or (
        subject.name if subject.kind == "dag" else ""
    )
    task = ""
    if subject.kind == "dataset":
        dataset = ctx.catalog.datasets.get(subject.name)
        if dataset is not None and dataset.produced_by is not None and dataset.produced_by.dag_id:
            dag = dag or dataset.produced_by.dag_id
            task = dataset.produced_by.task_id or ""
    if ctx.links.grafana_url:
        path = ctx.links.grafana_dashboard.format(
            team=quote(incident.team, safe=""),
            dataset=quote(subject.name if subject.kind == "dataset" else "", safe=""),
            dag_id=quote(dag, safe=""),
        )
        url = esc.safe_url(ctx.links.grafana_url.rstrip("/") + path)
        if url:
            out.append(_link("iw_link_grafana", "Grafana dashboard", url))
    if ctx.links.airflow_url and dag:
        path = f"/dags/{quote(dag, safe='')}"
        if task:
            path += f"/tasks/{quote(task, safe='')}"
        url = esc.safe_url(ctx.links.airflow_url.rstrip("/") + path)
        if url:
            out.append(_link("iw_link_airflow", "Airflow pipeline", url))
    if failure is not None:
        out.extend(_link(*link) for link in fw.failure_links(ctx.links.airflow_url, failure))
    if alert is not None:
        runbook = esc.safe_url(alert.annotations.get("runbook_url"))
        if runbook:
            out.append(_link("iw_link_runbook", "Runbook", runbook))
        source = esc.safe_url(alert.generator_url)
        if source:
            out.append(_link("iw_link_source", "Alert source", source))
    return out


def _affected_line(ctx: RenderContext, alert: AlertState, now: float) -> str:
    name = w.title(ctx.lineage, alert.subject)
    return f"{name} ({esc.text(alert.team)}): {w.problem(ctx.catalog, alert, now)}"


def _alert_line(alert: AlertState) -> str:
    summary = alert.annotations.get("summary")
    tail = f": {esc.text(esc.clip(summary, 200))}" if summary else ""
    state = {"firing": "", "suppressed": f", {w.SUPPRESSED}"}.get(alert.status, ", resolved")
    what = f"{alert.severity}, {esc.text(alert.kind)}{state}"
    return f"{esc.code(alert.alertname, 100)} ({what}){tail}"


def status_lines(ctx: RenderContext, incident: Incident) -> list[str]:
    lines = []
    if incident.acked_at is not None:
        who = esc.user(incident.acked_by or "")
        lines.append(f":white_check_mark: Acknowledged by {who} {esc.date(incident.acked_at)}")
    elif incident.snoozed_until is not None and incident.status == "open":
        who = esc.user(incident.snoozed_by or "")
        lines.append(f":zzz: Snoozed by {who} until {esc.date(incident.snoozed_until, '{time}')}")
    if incident.escalated:
        team = ctx.catalog.teams.get(incident.team)
        steps = team.escalation[: incident.escalated] if team else []
        who = ", ".join(esc.mention(s.mention, dict(ctx.groups)) for s in steps if s.mention)
        lines.append(f":rotating_light: Escalated ({incident.escalated} step(s)) to {who or '—'}")
    return lines


def render_incident(
    ctx: RenderContext, incident: Incident, now: float, failure: FailureReport | None = None
) -> Rendered:
    """The owning team's message: what is wrong, how bad, since when, owner, pipeline, links;
    for a failed run, what failed (`failure`, the collector's facts: failure_words.py)."""
    headline = w.headline(ctx.lineage, incident)
    main = w.main_alert(incident)
    own = [a for a in incident.alerts.values() if a.subject_key == incident.key]
    folded = sorted(
        (a for a in incident.alerts.values() if a.subject_key != incident.key),
        key=lambda a: (a.status != "firing", a.team, a.subject_key, a.alertname, a.fingerprint),
    )
    if incident.status == "resolved":
        took = w.human((incident.resolved_at or now) - incident.opened_at)
        top = f":white_check_mark: *Resolved: {headline}*\nResolved after {took}."
        muted = sum(a.status == "suppressed" for a in incident.alerts.values())
        if muted:
            top += f" ({muted} alert(s) {w.SUPPRESSED}, not resolved.)"
        fallback = f"Resolved: {headline}"
    else:
        emoji = w.EMOJI.get(incident.severity, ":large_orange_circle:")
        top = f"{emoji} *{incident.severity.capitalize()}: {headline}*"
        if main is not None:
            top += f"\n{w.sentence(w.problem(ctx.catalog, main, now))}"
        fallback = f"{incident.severity.capitalize()}: {headline}"
    blocks: list[dict[str, Any]] = [section(top)]
    about = w.description(ctx.catalog, incident.subject, main)
    if about:
        blocks.append(section(f"_{about}_"))
    blocks.extend(failure_blocks(incident, failure, now))
    blocks.extend(impact_blocks(ctx, incident))
    fields = [
        f"*Owner*\n{esc.text(incident.team)} ({esc.text(ctx.channel_of(incident.team))})",
        f"*Since*\n{esc.date(min([a.starts_at for a in own] or [incident.opened_at]))}",
    ]
    subject = incident.subject
    if subject.kind == "dataset" and subject.name in ctx.catalog.datasets:
        fields.append(f"*Tier*\n{ctx.catalog.datasets[subject.name].tier}")
    made = w.producer(ctx.catalog, ctx.lineage, subject)
    if made:
        fields.append(f"*Pipeline*\n{esc.clip(made, 1900)}")
    blocks.append({"type": "section", "fields": [mrkdwn(f) for f in fields]})
    if folded:
        lines = [_affected_line(ctx, a, now) for a in folded]
        blocks.append(section(f"*Also affected*\n{bullets(lines, len(lines))}"))
    if own:
        # Fully ordered: the same incident renders the same whatever order its rows came in.
        own.sort(key=lambda a: (a.status, a.alertname, a.severity, a.fingerprint))
        lines = [_alert_line(a) for a in own]
        blocks.append(section(f"*Alerts*\n{bullets(lines, len(lines))}"))
    notes = sorted({a.owner_note for a in incident.alerts.values() if a.owner_note})
    if notes:
        blocks.append(context(*(f":warning: {esc.text(n)}" for n in notes[:3])))
    built = w.upstream(ctx.catalog, ctx.lineage, subject)
    extra = status_lines(ctx, incident)
    if built or extra:
        blocks.append(context(*extra, *([built] if built else [])))
    if incident.status == "open":
        blocks.append(
            {
                "type": "actions",
                "block_id": "iw_incident",
                "elements": [
                    _button(ACK, "Acknowledge", incident.id, "primary"),
                    _button(SNOOZE, f"Snooze {w.human(ctx.snooze_seconds)}", incident.id),
                    _button(NOT_ACTIONABLE, "Not actionable", incident.id),
                ],
            }
        )
    links = link_buttons(ctx, incident, failure if incident.status == "open" else None)
    if links:
        blocks.append({"type": "actions", "block_id": "iw_links", "elements": links})
    blocks.append(context(f"impactwatch · updated {esc.date(now, '{time}')}"))
    return Rendered(fallback, blocks)


def failure_blocks(
    incident: Incident, failure: FailureReport | None, now: float
) -> list[dict[str, Any]]:
    """What failed, for an open incident about a failed run: the collector's facts, or a line
    saying they are not known."""
    if incident.status != "open" or fw.failure_dag(incident) is None:
        return []
    if failure is None:
        return [context(fw.unknown_text())]
    return [section(fw.failure_text(failure, now))]


def impact_text(ctx: RenderContext, impact: im.Impact) -> str:
    """ "*Impact* (score 23): 3 data products (…); teams …" and what is at stake, escaped."""
    titles = [w.title(ctx.lineage, Subject("dataset", n)) for n in impact.products]
    teams = [esc.text(t) for t in impact.teams]
    lines = [f"*Impact* (score {impact.score}): {im.summary(impact, titles, teams)}"]
    for name, stake in impact.stakes[:3]:
        title = w.title(ctx.lineage, Subject("dataset", name))
        lines.append(f"At stake for {title}: {esc.text(esc.clip(stake, 300))}")
    return "\n".join(lines)


def impact_blocks(ctx: RenderContext, incident: Incident) -> list[dict[str, Any]]:
    """The blast radius of an open incident (router/impact.py), when it reaches a product."""
    if incident.status != "open":
        return []
    impact = im.blast_radius(ctx.catalog, ctx.lineage, incident)
    return [section(impact_text(ctx, impact))] if impact.products else []


def render_affected(ctx: RenderContext, incident: Incident, team: str, now: float) -> Rendered:
    """A team whose data products suffer from another team's incident: one message, updated."""
    headline = w.headline(ctx.lineage, incident)
    mine = sorted(
        (a for a in incident.alerts.values() if a.team == team),
        key=lambda a: (a.status != "firing", a.subject_key, a.alertname, a.fingerprint),
    )
    owner = f"{esc.text(incident.team)} ({esc.text(ctx.channel_of(incident.team))})"
    firing = [a for a in mine if a.status == "firing"]
    if incident.status == "resolved" or not firing:
        top = f":white_check_mark: *Upstream problem over: {headline}*"
        fallback = f"Upstream problem over: {headline}"
    else:
        emoji = w.EMOJI.get(incident.severity, ":large_orange_circle:")
        top = f"{emoji} *Your data is affected by an upstream problem: {headline}*"
        fallback = f"Affected by an upstream problem: {headline}"
    lines = [_affected_line(ctx, a, now) for a in mine]
    blocks = [
        section(top),
        section(f"*Affected here*\n{bullets(lines, len(lines))}"),
        context(
            f"Root cause owned by {owner}; acknowledgement and escalation happen there.",
            *status_lines(ctx, incident)[:1],
        ),
    ]
    links = link_buttons(ctx, incident)
    if links:
        blocks.append({"type": "actions", "block_id": "iw_links", "elements": links})
    blocks.append(context(f"impactwatch · updated {esc.date(now, '{time}')}"))
    return Rendered(fallback, blocks)


def render_merged(ctx: RenderContext, incident: Incident, target: Incident | None) -> Rendered:
    """An incident folded into an upstream one after it was posted."""
    headline = w.headline(ctx.lineage, incident)
    if target is None:
        text = f":link: *{headline}* is now part of an upstream incident."
    else:
        where = esc.text(ctx.channel_of(target.team))
        text = (
            f":link: *{headline}* is now part of the upstream incident "
            f"*{w.headline(ctx.lineage, target)}* (followed in {where})."
        )
    return Rendered(f"Merged: {headline}", [section(text)])


def subject_title(ctx: RenderContext, key: str) -> str:
    return w.title(ctx.lineage, Subject.from_key(key))


def moved_note(refused: str, code: str) -> str:
    """The line a message moved to a fallback channel carries: where it could not go, why."""
    return (
        f":warning: Could not post in {esc.text(refused)}: {esc.text(code)}; posted here instead."
    )


def with_note(rendered: Rendered, line: str) -> Rendered:
    """`rendered` with a context line on top (Block Kit allows 50 blocks; ours stay far below)."""
    return Rendered(rendered.text, [context(line), *rendered.blocks])
