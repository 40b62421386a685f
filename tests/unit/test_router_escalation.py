from __future__ import annotations

from impactwatch.catalog.model import EscalationStep
from impactwatch.router import escalation
from impactwatch.router.model import Incident
from tests.unit.test_router_support import T0

STEPS = [
    EscalationStep(after=900, channel="#data-incidents", mention="S1"),
    EscalationStep(after=3600, mention="S2"),
]


def incident(**kw: object) -> Incident:
    return Incident(id="i1", key="dataset:x", team="t", opened_at=T0, **kw)  # type: ignore[arg-type]


def test_steps_fire_in_order_after_their_delay() -> None:
    inc = incident()
    assert escalation.next_due(inc, STEPS) == T0 + 900
    assert escalation.fire_due(inc, STEPS, T0 + 899) == []
    assert escalation.fire_due(inc, STEPS, T0 + 900) == [0]
    assert inc.next_escalation_at == T0 + 3600
    assert escalation.fire_due(inc, STEPS, T0 + 7200) == [1]
    assert inc.next_escalation_at is None  # no steps left


def test_a_router_down_through_both_steps_fires_both_when_back() -> None:
    inc = incident()
    assert escalation.fire_due(inc, STEPS, T0 + 4000) == [0, 1]


def test_snooze_holds_steps_until_it_ends_and_ack_stops_them() -> None:
    inc = incident(snoozed_until=T0 + 2000)
    assert escalation.next_due(inc, STEPS) == T0 + 2000
    inc.acked_at = T0 + 100
    assert escalation.next_due(inc, STEPS) is None
    assert escalation.fire_now(inc, STEPS, T0 + 200) == []


def test_resolved_incidents_never_escalate() -> None:
    assert escalation.next_due(incident(status="resolved"), STEPS) is None
