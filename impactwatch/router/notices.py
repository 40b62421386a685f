"""Messages around an incident: escalation posts, thread replies on change, the daily digest.

Thread replies say what changed since the last one the thread got (severity, scope, ack, snooze,
resolution), so many changes between two deliveries make one reply. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from impactwatch.contract.alerts import CRITICAL, FRESHNESS
from impactwatch.router import escape as esc
from impactwatch.router import wording as w
from impactwatch.router.model import Incident
from impactwatch.router.render import (
    RenderContext,
    Rendered,
    bullets,
    context,
    link_buttons,
    section,
    subject_title,
)


def render_escalation(ctx: RenderContext, incident: Incident, step: int, now: float) -> Rendered:
    """Step `step` of the owning team's escalation: mention the on-call, say what is at stake."""
    team = ctx.catalog.teams.get(incident.team)
    steps = team.escalation if team else []
    mention = steps[step].mention if step < len(steps) else None
    who = esc.mention(mention, dict(ctx.groups)) if mention else ""
    headline = w.headline(ctx.lineage, incident)
    owner = f"{esc.text(incident.team)} ({esc.text(ctx.channel_of(incident.team))})"
    if incident.status == "resolved":
        state = f"Resolved after {w.human((incident.resolved_at or now) - incident.opened_at)}."
    elif incident.acked_at is not None:
        state = f"Acknowledged by {esc.user(incident.acked_by or '')}."
    elif incident.status == "merged":
        state = "Now part of an upstream incident."
    else:
        state = f"Open {w.human(now - incident.opened_at)}, not acknowledged."
    text = (
        f":rotating_light: {who} *Escalation {step + 1}: "
        f"{incident.severity.capitalize()}: {headline}*\n{state} Owner {owner}."
    ).replace(":rotating_light:  ", ":rotating_light: ")
    blocks: list[dict[str, Any]] = [section(text)]
    links = link_buttons(ctx, incident)
    if links:
        blocks.append({"type": "actions", "block_id": "iw_links", "elements": links})
    return Rendered(f"Escalation {step + 1}: {headline}", blocks)


def snapshot(incident: Incident) -> dict[str, Any]:
    """What the thread has been told: compared with the next snapshot to write a reply."""
    return {
        "root": incident.key,
        "status": incident.status,
        "severity": incident.severity,
        "scope": sorted({a.subject_key for a in incident.firing()}),
        "acked_by": incident.acked_by,
        "snoozed_until": incident.snoozed_until,
    }


def thread_reply(
    ctx: RenderContext, incident: Incident, told: Mapping[str, Any], now: float
) -> str | None:
    """A short reply saying what changed since `told`, or None when nothing worth saying did."""
    new = snapshot(incident)
    lines: list[str] = []
    if told.get("root", incident.key) != incident.key:
        # This message was another incident's, folded into this one: say so, once.
        headline = w.headline(ctx.lineage, incident)
        lines.append(f":link: The root cause is upstream: now tracked as *{headline}*.")
        told = {**new, "acked_by": told.get("acked_by"), "snoozed_until": told.get("snoozed_until")}
    if new["status"] == "resolved" and told.get("status") != "resolved":
        took = w.human((incident.resolved_at or now) - incident.opened_at)
        lines.append(f":white_check_mark: Resolved after {took}.")
    elif new["status"] == "merged" and told.get("status") != "merged":
        lines.append(":link: Merged into an upstream incident.")
    if new["status"] == "open" and new["severity"] != told.get("severity"):
        verb = "raised" if new["severity"] == CRITICAL else "lowered"
        lines.append(f"Severity {verb} to *{new['severity']}*.")
    if new["status"] == "open":
        added = sorted(set(new["scope"]) - set(told.get("scope", ())))
        gone = sorted(set(told.get("scope", ())) - set(new["scope"]))
        added = [k for k in added if k != incident.key]
        lines.extend(added_lines(ctx, incident, added))
        if gone:
            names = [subject_title(ctx, k) for k in gone]
            lines.append(f"Recovered: {_names(names)}.")
    if new["acked_by"] and new["acked_by"] != told.get("acked_by"):
        lines.append(f"Acknowledged by {esc.user(new['acked_by'])}: escalation stopped.")
    elif (
        new["snoozed_until"]
        and new["snoozed_until"] != told.get("snoozed_until")
        and new["status"] == "open"
    ):
        until = esc.date(new["snoozed_until"], "{time}")
        lines.append(f":zzz: Snoozed until {until} by {esc.user(incident.snoozed_by or '')}.")
    return "\n".join(lines) if lines else None


def added_lines(ctx: RenderContext, incident: Incident, keys: Sequence[str]) -> list[str]:
    """What joined the incident: data products gone stale are "out of date", the rest
    "affected" ("Now also out of date: Market prices")."""
    stale = {
        a.subject_key
        for a in incident.alerts.values()
        if a.kind == FRESHNESS and a.status == "firing"
    }
    late = [subject_title(ctx, k) for k in keys if k in stale]
    other = [subject_title(ctx, k) for k in keys if k not in stale]
    out = []
    if late:
        out.append(f"Now also out of date: {_names(late)}.")
    if other:
        out.append(f"Now also affected: {_names(other)}.")
    return out


def _names(names: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def render_reply(text: str) -> Rendered:
    return Rendered(text, [section(text)])


def render_digest(
    ctx: RenderContext, team: str, items: Sequence[Mapping[str, Any]], since: float, now: float
) -> Rendered:
    """One message per team and day: the warnings that never became incidents."""
    lines = []
    for item in items:
        name = subject_title(ctx, item["subject_key"])
        ended = item.get("ended_at")
        lasted = w.human((ended or now) - item["starts_at"])
        state = f"for {lasted}" if ended else f"{lasted} so far, still firing"
        lines.append(
            f"{name}: {esc.code(item['alertname'], 100)} from {esc.date(item['starts_at'])} "
            f"({state})"
        )
    count = len(items)
    head = (
        f":memo: *Daily digest for {esc.text(team)}*: {count} warning(s) since "
        f"{esc.date(since)} that did not become incidents"
    )
    blocks = [section(head)]
    if lines:
        blocks.append(section(bullets(lines, count)))
    blocks.append(context("Set `digest: false` for the team in the catalog to hear of each."))
    return Rendered(f"Daily digest for {esc.text(team)}: {count} warning(s)", blocks)
