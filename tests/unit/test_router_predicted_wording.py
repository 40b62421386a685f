"""Router wording of predicted misses (router/wording.py): pure, no servers."""

from __future__ import annotations

from datetime import UTC, datetime

from impactwatch.catalog.model import Catalog
from impactwatch.router.model import AlertState, Incident
from impactwatch.router.routing import Lineage
from impactwatch.router.wording import headline, main_alert, problem

CATALOG = Catalog.model_validate(
    {
        "teams": {"risk": {"slack_channel": "#r"}},
        "datasets": {"scores": {"team": "risk", "title": "Customer risk scores"}},
    }
)
DUE = datetime(2027, 1, 4, 7, 0, tzinfo=UTC).timestamp()
T0 = DUE - 3600


def predicted(status: str = "firing", **notes: str) -> AlertState:
    annotations = {
        "summary": "scores will likely be ~40m late: risk_scoring is behind its usual pace",
        "expected_at": f"{DUE + 40 * 60:.0f}",
        "due_at": f"{DUE:.0f}",
        "task_id": "score_customers",
        "behind_seconds": "2100",
        **notes,
    }
    return AlertState(
        fingerprint="p",
        alertname="DataProductLikelyLate",
        subject_key="dataset:scores",
        team="risk",
        severity="warning",
        kind="predicted",
        status=status,
        starts_at=T0,
        ends_at=T0 + 1800 if status == "resolved" else None,
        labels={"dataset": "scores", "dag_id": "risk_scoring"},
        annotations=annotations,
    )


def test_a_predicted_miss_says_how_late_where_the_run_is_and_when() -> None:
    text = problem(CATALOG, predicted(), T0 + 60)
    assert text == (
        "Customer risk scores will likely be ~40 min late: `risk_scoring` is at "
        "`score_customers`, 35 min behind its usual pace; expected 07:40, limit 07:00 (UTC)"
    )


def test_a_run_not_started_and_hostile_annotations() -> None:
    text = problem(CATALOG, predicted(task_id="", behind_seconds="1800"), T0 + 60)
    assert "`risk_scoring` has not started, 30 min behind its usual pace" in text
    text = problem(CATALOG, predicted(task_id="<!channel>`x"), T0 + 60)
    assert "<!channel>" not in text
    odd = problem(CATALOG, predicted(expected_at="nan", due_at="<!here>"), T0 + 60)
    assert "will likely be ~40m late" in odd and "<!here>" not in odd  # the rule's summary


def test_it_resolves_as_caught_up() -> None:
    assert problem(CATALOG, predicted("resolved"), T0 + 1800).startswith("caught up")


def test_the_breach_takes_over_the_predicted_incident() -> None:
    incident = Incident(id="i", key="dataset:scores", team="risk", opened_at=T0)
    incident.alerts["p"] = predicted()
    lineage = Lineage(CATALOG)
    assert headline(lineage, incident) == "Customer risk scores — will likely be late"
    stale = AlertState(
        fingerprint="s",
        alertname="DataProductStale",
        subject_key="dataset:scores",
        team="risk",
        severity="warning",
        kind="freshness",
        status="firing",
        starts_at=T0 + 3600,
        ends_at=None,
        labels={"dataset": "scores"},
        annotations={"summary": "stale"},
    )
    incident.alerts["s"] = stale
    assert main_alert(incident) is stale  # same severity: the breach names the problem
    assert headline(lineage, incident) == "Customer risk scores — out of date"
