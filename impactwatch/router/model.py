"""The incident model: records only; the decisions (`incidents`, `escalation`) depend on it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from impactwatch.router.routing import Subject


@dataclass
class AlertState:
    fingerprint: str
    alertname: str
    subject_key: str
    team: str
    severity: str
    kind: str
    status: str  # firing | resolved | suppressed (silenced or inhibited in Alertmanager)
    starts_at: float
    ends_at: float | None
    labels: dict[str, str]
    annotations: dict[str, str]
    generator_url: str = ""
    owner_note: str | None = None
    incident_id: str | None = None
    held: bool = False  # a warning kept for the team's daily digest instead of a ping
    was_held: bool = False  # held when loaded: its digest item needs updating
    group_key: str | None = None  # the Alertmanager group it last came in
    dirty: bool = False

    @property
    def subject(self) -> Subject:
        return Subject.from_key(self.subject_key)

    def visible(self) -> tuple[Any, ...]:
        return (
            self.fingerprint,
            self.status,
            self.severity,
            self.subject_key,
            self.starts_at,
            tuple(sorted(self.annotations.items())),
        )


@dataclass
class Incident:
    id: str
    key: str
    team: str
    opened_at: float
    status: str = "open"  # open | resolved | merged
    severity: str = "warning"
    resolved_at: float | None = None
    acked_by: str | None = None
    acked_at: float | None = None
    snoozed_until: float | None = None
    snoozed_by: str | None = None
    escalated: int = 0
    escalated_at: float | None = None
    next_escalation_at: float | None = None
    merged_into: str | None = None
    rev: int = 0
    alerts: dict[str, AlertState] = field(default_factory=dict)
    new: bool = False
    dirty: bool = False

    @property
    def subject(self) -> Subject:
        return Subject.from_key(self.key)

    def firing(self) -> list[AlertState]:
        return [a for a in self.alerts.values() if a.status == "firing"]

    def visible(self) -> tuple[Any, ...]:
        """Everything a message shows; a change bumps `rev` and re-renders the messages."""
        return (
            self.status,
            self.severity,
            self.acked_by,
            self.snoozed_until,
            self.escalated,
            self.merged_into,
            tuple(sorted(a.visible() for a in self.alerts.values())),
        )


@dataclass
class View:
    """The slice of state a notification can touch, loaded by the store."""

    alerts: dict[str, AlertState] = field(default_factory=dict)
    incidents: dict[str, Incident] = field(default_factory=dict)
    before: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    stored: set[str] = field(default_factory=set)  # fingerprints already in the DB
    messages: set[str] = field(default_factory=set)  # outbox keys of the loaded incidents

    def seal(self) -> None:
        """Remember what each loaded incident showed, to tell what changed."""
        self.before = {i.id: i.visible() for i in self.incidents.values()}


@dataclass
class Changes:
    alerts: list[AlertState] = field(default_factory=list)
    incidents: list[Incident] = field(default_factory=list)
    messages: set[tuple[str, str, str]] = field(default_factory=set)  # (incident, role, team)
    escalations: list[tuple[str, int]] = field(default_factory=list)
    merges: list[tuple[str, str]] = field(default_factory=list)  # (folded, into)
    held: list[AlertState] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=dict)

    def count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1


@dataclass(frozen=True)
class Action:
    """A button press, parsed and verified (`interactions.parse_action`)."""

    kind: str  # ack | snooze | not_actionable
    incident_id: str
    user_id: str
