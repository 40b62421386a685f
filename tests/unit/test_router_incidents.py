"""Incident decisions on in-memory state: grouping, lineage folding, duplicates, ownership."""

from __future__ import annotations

import itertools

import pytest

from impactwatch.router.incidents import Decider, teams_with_digest
from impactwatch.router.model import Changes, Incident, View
from impactwatch.router.payload import Notification, parse_notification
from impactwatch.router.render import RenderContext, render_incident
from tests.unit.test_router_support import T0, alert, body, catalog, notification, texts


class Memory:
    """The store's part, in memory: state carried from one notification to the next."""

    def __init__(self) -> None:
        ids = itertools.count(1)
        cat = catalog()
        self.decider = Decider(cat, lambda: f"i{next(ids)}", teams_with_digest(cat))
        self.view = View()

    def apply(self, note: Notification, now: float = T0) -> Changes:
        for incident in self.view.incidents.values():
            incident.new = incident.dirty = False
        self.view.seal()
        changes = self.decider.apply(self.view, note, now)
        for a in self.view.alerts.values():
            a.dirty = False
        return changes

    def open(self) -> dict[str, Incident]:
        return {i.key: i for i in self.view.incidents.values() if i.status == "open"}


@pytest.fixture
def memory() -> Memory:
    return Memory()


def test_alerts_of_one_data_product_make_one_incident(memory: Memory) -> None:
    changes = memory.apply(
        notification(
            alert(dataset="market_data", team="markets"),
            alert("DataProductLate", kind="deadline", dataset="market_data", team="markets"),
        )
    )
    (incident,) = memory.open().values()
    assert incident.key == "dataset:market_data" and incident.team == "markets"
    assert len(incident.alerts) == 2
    assert changes.messages == {(incident.id, "primary", "markets")}


def test_downstream_alerts_fold_into_the_open_upstream_incident(memory: Memory) -> None:
    memory.apply(notification(alert(dataset="market_data", team="markets")))
    changes = memory.apply(
        notification(
            alert(dataset="customer_risk_scores", team="risk"),
            alert(dataset="regulatory_submission", team="compliance"),
        )
    )
    (root,) = memory.open().values()
    assert root.key == "dataset:market_data"
    assert {a.subject_key for a in root.alerts.values()} == {
        "dataset:market_data",
        "dataset:customer_risk_scores",
        "dataset:regulatory_submission",
    }
    assert {role for _i, role, _t in changes.messages} == {
        "primary",
        "affected:risk",
        "affected:compliance",
    }


def test_a_pipeline_failure_covers_what_it_produces_and_downstream(memory: Memory) -> None:
    memory.apply(notification(alert("PipelineFailed", kind="failure", dag_id="risk_scoring")))
    memory.apply(notification(alert(dataset="regulatory_submission", team="compliance")))
    (root,) = memory.open().values()
    assert root.key == "dag:risk_scoring" and root.team == "risk"


def test_an_upstream_alert_arriving_later_absorbs_the_downstream_incidents(
    memory: Memory,
) -> None:
    memory.apply(notification(alert(dataset="customer_risk_scores", team="risk")))
    memory.apply(notification(alert(dataset="regulatory_submission", team="compliance")))
    assert set(memory.open()) == {"dataset:customer_risk_scores"}  # already folded
    changes = memory.apply(notification(alert(dataset="market_data", team="markets")))
    (root,) = memory.open().values()
    assert root.key == "dataset:market_data" and len(root.alerts) == 3
    folded = [i for i in memory.view.incidents.values() if i.status == "merged"]
    assert [(i.key, i.merged_into) for i in folded] == [("dataset:customer_risk_scores", root.id)]
    assert changes.merges == [(folded[0].id, root.id)]


def test_a_repeated_or_ha_copy_notification_changes_nothing(memory: Memory) -> None:
    note = notification(alert(dataset="market_data", team="markets"))
    memory.apply(note)
    again = memory.apply(note)
    assert again.outcomes == {"duplicate": 1}
    assert again.incidents == [] and again.escalations == []


def test_resolution_closes_the_incident_and_a_late_firing_copy_is_ignored(
    memory: Memory,
) -> None:
    firing = alert(dataset="market_data", team="markets")
    memory.apply(notification(firing))
    resolved = memory.apply(
        notification(alert(dataset="market_data", team="markets", status="resolved")),
        now=T0 + 2520,
    )
    (incident,) = resolved.incidents
    assert incident.status == "resolved" and incident.resolved_at == T0 + 2520
    late = memory.apply(notification(firing), now=T0 + 2600)  # the other HA peer, late
    assert late.outcomes == {"stale": 1} and late.incidents == []
    refire = memory.apply(
        notification(alert(dataset="market_data", team="markets", starts=T0 + 3000))
    )
    assert refire.outcomes == {"new": 1}
    assert len(memory.open()) == 1 and next(iter(memory.open().values())).id != incident.id


def test_unknown_owner_goes_to_the_default_team_with_a_line_saying_so(memory: Memory) -> None:
    memory.apply(notification(alert(dataset="<!channel>", team="nobody")))
    memory.apply(notification(alert(dataset="new_table", team="risk")))
    memory.apply(notification(alert("SchedulerDown", kind="platform", team="markets")))
    by_key = {i.key: i for i in memory.view.incidents.values()}
    unknown = by_key["dataset:<!channel>"]
    assert unknown.team == "platform"
    (note,) = {a.owner_note for a in unknown.alerts.values()}
    assert note.startswith("Owner missing") and "'nobody'" in note
    labelled = by_key["dataset:new_table"]
    assert labelled.team == "risk"
    assert "team label" in next(iter(labelled.alerts.values())).owner_note
    platform = by_key["rule:SchedulerDown"]
    assert platform.team == "markets" and next(iter(platform.alerts.values())).owner_note is None


def test_a_warning_that_becomes_critical_escalates_at_once(memory: Memory) -> None:
    memory.apply(notification(alert(dataset="market_data", team="markets")))
    (incident,) = memory.open().values()
    assert incident.next_escalation_at == T0 + 15 * 60
    incident.snoozed_until = T0 + 3600
    changes = memory.apply(
        notification(alert(dataset="market_data", team="markets", severity="critical")),
        now=T0 + 60,
    )
    assert changes.escalations == [(incident.id, 0)]
    assert incident.severity == "critical" and incident.snoozed_until is None
    assert incident.next_escalation_at == T0 + 3600  # the second step keeps its own timer


def test_an_acknowledged_incident_does_not_escalate_on_severity(memory: Memory) -> None:
    memory.apply(notification(alert(dataset="market_data", team="markets")))
    (incident,) = memory.open().values()
    assert memory.decider.acknowledge(incident, "U1", T0 + 30)
    assert incident.next_escalation_at is None
    changes = memory.apply(
        notification(alert(dataset="market_data", team="markets", severity="critical"))
    )
    assert changes.escalations == [] and incident.severity == "critical"


def test_a_digest_team_hears_of_warnings_in_the_digest_and_of_criticals_at_once(
    memory: Memory,
) -> None:
    changes = memory.apply(notification(alert(dataset="daily_kpi_report", team="reporting")))
    assert memory.open() == {} and [a.held for a in changes.held] == [True]
    changes = memory.apply(
        notification(alert(dataset="daily_kpi_report", team="reporting", severity="critical"))
    )
    (incident,) = memory.open().values()
    assert incident.team == "reporting" and incident.severity == "critical"


def test_lineage_components_say_which_decisions_can_run_side_by_side(memory: Memory) -> None:
    lineage = memory.decider.lineage
    from impactwatch.router.routing import Subject

    same = {
        lineage.component(Subject("dataset", "market_data")),
        lineage.component(Subject("dataset", "regulatory_submission")),
        lineage.component(Subject("dag", "risk_scoring")),
    }
    assert len(same) == 1
    assert lineage.component(Subject("dataset", "daily_kpi_report")) not in same
    assert lineage.component(Subject("rule", "SchedulerDown")) == "rule:SchedulerDown"


# Alertmanager sends a group's alerts minus the silenced and inhibited ones (notify.MuteStage),
# and nothing at all while every alert of the group is muted. Checked against the real one in
# tests/integration/test_router_alertmanager.py.
GROUP = '{}/{team="markets"}:{dataset="market_data", team="markets"}'
MARKET = {"dataset": "market_data", "team": "markets"}


def in_group(*alerts: dict, truncated: int = 0) -> Notification:
    return parse_notification(body(alerts, groupKey=GROUP, truncatedAlerts=truncated), T0)


def test_an_alert_missing_from_its_groups_notification_no_longer_counts_as_firing(
    memory: Memory,
) -> None:
    late = alert("DataProductLate", kind="deadline", **MARKET)
    memory.apply(in_group(alert(**MARKET), late))
    (incident,) = memory.open().values()
    # The critical fires: Alertmanager inhibits the warning, and a silence mutes the deadline.
    changes = memory.apply(in_group(alert(severity="critical", **MARKET)), now=T0 + 60)
    assert changes.outcomes == {"new": 1, "suppressed": 2}
    assert [(a.alertname, a.severity) for a in incident.firing()] == [
        ("DataProductStale", "critical")
    ]
    assert sorted(a.status for a in incident.alerts.values()) == [
        "firing",
        "suppressed",
        "suppressed",
    ]
    assert incident.status == "open" and incident.severity == "critical"
    # The critical resolves: the warning is no longer inhibited and is in the list again.
    back = memory.apply(
        in_group(alert(severity="critical", status="resolved", **MARKET), alert(**MARKET)),
        now=T0 + 120,
    )
    assert back.outcomes == {"resolved": 1, "updated": 1}
    assert [a.severity for a in incident.firing()] == ["warning"]
    assert incident.status == "open" and incident.severity == "warning"


def test_a_truncated_list_or_another_groups_notification_mutes_nothing(memory: Memory) -> None:
    late = alert("DataProductLate", kind="deadline", **MARKET)
    memory.apply(in_group(alert(**MARKET), late))
    assert memory.apply(in_group(alert(**MARKET), truncated=1)).outcomes == {"duplicate": 1}
    assert memory.apply(notification(late)).outcomes == {"duplicate": 1}  # another group
    (incident,) = memory.open().values()
    assert len(incident.firing()) == 2


def test_when_the_last_firing_alerts_are_muted_the_message_says_so_not_just_resolved(
    memory: Memory,
) -> None:
    late = alert("DataProductLate", kind="deadline", **MARKET)
    memory.apply(in_group(alert(**MARKET), late))
    # The deadline alert is silenced, then the freshness alert resolves: only that is sent.
    changes = memory.apply(in_group(alert(status="resolved", **MARKET)), now=T0 + 600)
    (incident,) = changes.incidents
    assert incident.status == "resolved"
    shown = render_incident(RenderContext(catalog()), incident, T0 + 600)
    words = "\n".join(texts(shown.blocks))
    assert "1 alert(s) silenced or inhibited in Alertmanager, not resolved." in words
    assert "`DataProductLate` (warning, deadline, silenced or inhibited in Alertmanager)" in words
