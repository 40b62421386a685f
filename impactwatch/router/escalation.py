"""When an incident escalates: the owning team's steps, acknowledgement and snooze. Pure.

Step i fires once the incident has been open `steps[i].after` seconds, unresolved and
unacknowledged, and not before a snooze ends. A warning that becomes critical fires the next step
at once (and ends a snooze). Acknowledge stops escalation for good.
"""

from __future__ import annotations

from collections.abc import Sequence

from impactwatch.catalog.model import EscalationStep
from impactwatch.router.model import Incident


def next_due(incident: Incident, steps: Sequence[EscalationStep]) -> float | None:
    """When the next step fires, or None when none will (resolved, acknowledged, no steps)."""
    if incident.status != "open" or incident.acked_at is not None:
        return None
    if incident.escalated >= len(steps):
        return None
    due = incident.opened_at + steps[incident.escalated].after
    if incident.snoozed_until is not None:
        due = max(due, incident.snoozed_until)
    return due


def fire_due(incident: Incident, steps: Sequence[EscalationStep], now: float) -> list[int]:
    """Steps due by `now`, in order; marks them fired and sets the next due time."""
    fired: list[int] = []
    while (due := next_due(incident, steps)) is not None and due <= now:
        fired.append(incident.escalated)
        incident.escalated += 1
    incident.next_escalation_at = next_due(incident, steps)
    if fired:
        incident.escalated_at = now
    return fired


def fire_now(incident: Incident, steps: Sequence[EscalationStep], now: float) -> list[int]:
    """A warning became critical: the next step fires now, whatever its timer says."""
    if incident.status != "open" or incident.acked_at is not None:
        return []
    incident.snoozed_until = None
    incident.snoozed_by = None
    if incident.escalated >= len(steps):
        return []
    step = incident.escalated
    incident.escalated += 1
    incident.escalated_at = now
    incident.next_escalation_at = next_due(incident, steps)
    return [step]


def reschedule(incident: Incident, steps: Sequence[EscalationStep]) -> None:
    incident.next_escalation_at = next_due(incident, steps)
