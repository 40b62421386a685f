"""Incident decisions: which alerts make one business problem, and what changed. Pure.

An incident is keyed by its subject (a data product, else a pipeline, else an alert rule); one is
open per key. A firing alert joins, in order: the open incident it already belongs to; an open
incident whose subject covers it through lineage (the most upstream one); else a new incident,
which absorbs the open incidents downstream of it. Notifications that change nothing (repeats,
the second of an Alertmanager HA pair, late copies) change nothing here, so they send nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from impactwatch.catalog.model import Catalog, EscalationStep
from impactwatch.router import escalation
from impactwatch.router.model import AlertState, Changes, Incident, View
from impactwatch.router.payload import Alert, Notification
from impactwatch.router.producers import Learned, learn
from impactwatch.router.routing import SEVERITY_RANK, Lineage, Subject, route

StepsOf = Callable[[str], Sequence[EscalationStep]]


class Decider:
    """Applies notifications and timers to a `View`; the store writes what it marks dirty."""

    def __init__(
        self, catalog: Catalog, new_id: Callable[[], str], digest_teams: frozenset[str]
    ) -> None:
        self.catalog = catalog
        self.lineage = Lineage(catalog)
        self.new_id = new_id
        self.digest_teams = digest_teams

    def steps_of(self, team: str) -> Sequence[EscalationStep]:
        found = self.catalog.teams.get(team)
        return found.escalation if found is not None else ()

    def keys_for(self, notification: Notification) -> set[str]:
        """Incident keys the store must load so lineage decisions see every candidate."""
        keys: set[str] = set()
        learned = learn(a.annotations for a in notification.alerts)
        for alert in notification.alerts:
            subject = route(alert, self.catalog).subject
            keys |= self.lineage.upstream_keys(subject, learned)
            keys |= self.lineage.downstream_keys(subject, learned)
        return keys

    def locks_for(self, notification: Notification) -> list[str]:
        """The lineage components a notification can touch (each is locked while deciding)."""
        learned = learn(a.annotations for a in notification.alerts)
        found: set[str] = set()
        for alert in notification.alerts:
            found |= self.lineage.components(route(alert, self.catalog).subject, learned)
        return sorted(found)

    def lock_for_key(self, key: str) -> str:
        return self.lineage.component(Subject.from_key(key))

    # -- notifications ------------------------------------------------------------------------
    def apply(self, view: View, notification: Notification, now: float) -> Changes:
        changes = Changes()
        group = notification.group_key or None
        learned = learn(
            [*(a.annotations for a in notification.alerts)]
            + [a.annotations for a in view.alerts.values() if a.status == "firing"]
            + [a.annotations for i in view.incidents.values() for a in i.alerts.values()]
        )
        for alert in notification.alerts:
            self._one(view, alert, now, changes, group, learned)
        if group is not None and not notification.truncated:
            self._suppressed(view, notification, group, changes)
        self._settle(view, now, changes)
        return changes

    def _suppressed(
        self, view: View, notification: Notification, group: str, changes: Changes
    ) -> None:
        """Alertmanager sends a group's alerts minus the silenced and inhibited ones (and sends
        nothing while all are): a firing alert of the group missing from a complete list is
        muted there, so it is no longer shown as firing. Back in a later list, it fires again."""
        present = {a.fingerprint for a in notification.alerts}
        for state in view.alerts.values():
            if (
                state.group_key == group
                and state.status == "firing"
                and state.fingerprint not in present
            ):
                state.status, state.dirty = "suppressed", True
                incident = self.live(view, state.incident_id)
                if incident is not None:
                    incident.dirty = True
                changes.count("suppressed")

    def _one(
        self,
        view: View,
        alert: Alert,
        now: float,
        changes: Changes,
        group: str | None = None,
        learned: Learned | None = None,
    ) -> None:
        state = view.alerts.get(alert.fingerprint)
        if state is not None and group is not None and state.group_key != group:
            state.group_key, state.dirty = group, True  # not a visible change
        if alert.status == "resolved":
            if state is None:
                changes.count("unknown_resolved")  # never seen firing: nothing to close
                return
            if state.status == "resolved" or alert.starts_at < state.starts_at:
                changes.count("duplicate" if state.status == "resolved" else "stale")
                return
            state.status, state.ends_at, state.dirty = "resolved", alert.ends_at or now, True
            incident = self.live(view, state.incident_id)
            if incident is not None:
                incident.dirty = True
            changes.count("resolved")
            return
        if state is not None and (
            alert.starts_at < state.starts_at
            or (state.status == "resolved" and alert.starts_at == state.starts_at)
        ):
            changes.count("stale")  # a late copy of an episode already resolved or replaced
            return
        routed = route(alert, self.catalog)
        fresh = state is None or state.status == "resolved"
        before = state.visible() if state is not None else None
        new_state = AlertState(
            fingerprint=alert.fingerprint,
            alertname=alert.label("alertname") or "unnamed alert",
            subject_key=routed.subject.key,
            team=routed.team,
            severity=routed.severity,
            kind=routed.kind,
            status="firing",
            starts_at=alert.starts_at,
            ends_at=None,
            labels=dict(alert.labels),
            annotations=dict(alert.annotations),
            generator_url=alert.generator_url,
            owner_note=routed.owner_note,
            incident_id=None if fresh or state is None else state.incident_id,
            held=False if fresh or state is None else state.held,
            was_held=state.was_held if state is not None else False,
            group_key=group if group is not None else (state.group_key if state else None),
            dirty=True,
        )
        if not fresh and before == new_state.visible() and self._attached(view, new_state):
            changes.count("duplicate")
            return
        view.alerts[alert.fingerprint] = new_state
        changes.count("new" if fresh else "updated")
        self._attach(view, new_state, now, changes, learned or {})

    def _attached(self, view: View, state: AlertState) -> bool:
        incident = self.live(view, state.incident_id)
        return state.held or (incident is not None and incident.status == "open")

    def live(self, view: View, incident_id: str | None) -> Incident | None:
        """The incident an id leads to, following merges."""
        seen: set[str] = set()
        while incident_id is not None and incident_id not in seen:
            seen.add(incident_id)
            incident = view.incidents.get(incident_id)
            if incident is None:
                return None
            if incident.status != "merged":
                return incident
            incident_id = incident.merged_into
        return None

    def _attach(
        self, view: View, state: AlertState, now: float, changes: Changes, learned: Learned
    ) -> None:
        current = self.live(view, state.incident_id)
        if current is not None and current.status == "open":
            self._move(view, state, current)
            return
        subject = state.subject
        target = self._covering(view, subject, learned)
        if target is None:
            if state.team in self.digest_teams and state.severity == "warning":
                state.incident_id, state.held = None, True
                changes.held.append(state)
                return
            target = self._open(view, subject, state.team, now, learned)
        state.held = False
        self._move(view, state, target)

    def _move(self, view: View, state: AlertState, target: Incident) -> None:
        old = view.incidents.get(state.incident_id) if state.incident_id else None
        if old is not None and old is not target:
            old.alerts.pop(state.fingerprint, None)
            old.dirty = True
        state.incident_id = target.id
        state.dirty = True
        target.alerts[state.fingerprint] = state
        target.dirty = True

    def _covering(self, view: View, subject: Subject, learned: Learned) -> Incident | None:
        covers = self.lineage.covers
        found = [
            i
            for i in view.incidents.values()
            if i.status == "open" and covers(i.subject, subject, learned)
        ]
        if not found:
            return None
        roots = [
            i
            for i in found
            if not any(j is not i and covers(j.subject, i.subject, learned) for j in found)
        ] or found
        return min(roots, key=lambda i: (i.opened_at, i.key))

    def _open(
        self, view: View, subject: Subject, team: str, now: float, learned: Learned
    ) -> Incident:
        incident = Incident(
            id=self.new_id(), key=subject.key, team=team, opened_at=now, new=True, dirty=True
        )
        view.incidents[incident.id] = incident
        for other in list(view.incidents.values()):
            if (
                other is not incident
                and other.status == "open"
                and self.lineage.covers(subject, other.subject, learned)
            ):
                for alert in list(other.alerts.values()):
                    self._move(view, alert, incident)
                other.status, other.merged_into, other.dirty = "merged", incident.id, True
                other.next_escalation_at = None
        return incident

    def _settle(self, view: View, now: float, changes: Changes) -> None:
        """Severity, resolution, escalation and messages of every incident that changed."""
        for incident in view.incidents.values():
            if not incident.dirty:
                continue
            steps = self.steps_of(incident.team)
            firing = incident.firing()
            if incident.status == "open" and not firing:
                incident.status, incident.resolved_at = "resolved", now
                incident.next_escalation_at = None
            elif incident.status == "open":
                severity = max((a.severity for a in firing), key=SEVERITY_RANK.__getitem__)
                raised = SEVERITY_RANK[severity] > SEVERITY_RANK[incident.severity]
                incident.severity = severity
                if raised and severity == "critical" and not incident.new:
                    for step in escalation.fire_now(incident, steps, now):
                        changes.escalations.append((incident.id, step))
                elif incident.new:
                    escalation.reschedule(incident, steps)
            self.finish(view, incident, changes)
        changes.alerts.extend(a for a in view.alerts.values() if a.dirty)

    def finish(self, view: View, incident: Incident, changes: Changes) -> None:
        """Bump the revision when anything visible changed, and name the messages it needs."""
        before = view.before.get(incident.id)
        if incident.new or before != incident.visible():
            incident.rev += 1
            changes.incidents.append(incident)
        if incident.merged_into and (before is None or before[0] != "merged"):
            changes.merges.append((incident.id, incident.merged_into))
        if incident.status == "open":
            changes.messages.add((incident.id, "primary", incident.team))
            for team in sorted({a.team for a in incident.alerts.values()} - {incident.team}):
                changes.messages.add((incident.id, f"affected:{team}", team))

    # -- timers and buttons -------------------------------------------------------------------
    def escalate(self, view: View, incident: Incident, now: float, changes: Changes) -> None:
        for step in escalation.fire_due(incident, self.steps_of(incident.team), now):
            changes.escalations.append((incident.id, step))
        self.finish(view, incident, changes)

    def acknowledge(self, incident: Incident, user: str, now: float) -> bool:
        if incident.status != "open" or incident.acked_at is not None:
            return False
        incident.acked_by, incident.acked_at = user, now
        incident.next_escalation_at = None
        return True

    def snooze(self, incident: Incident, user: str, now: float, seconds: float) -> bool:
        if incident.status != "open" or incident.acked_at is not None:
            return False
        incident.snoozed_until, incident.snoozed_by = now + seconds, user
        escalation.reschedule(incident, self.steps_of(incident.team))
        return True


def teams_with_digest(catalog: Catalog) -> frozenset[str]:
    return frozenset(name for name, team in catalog.teams.items() if team.digest)
