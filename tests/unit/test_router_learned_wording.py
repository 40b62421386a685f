"""Router wording of alerts on learned thresholds (router/wording.py)."""

from __future__ import annotations

from impactwatch.catalog.model import Catalog
from impactwatch.router.model import AlertState
from impactwatch.router.wording import problem

CATALOG = Catalog.model_validate(
    {"teams": {"risk": {"slack_channel": "#r"}}, "datasets": {"scores": {"team": "risk"}}}
)
T0 = 1_800_000_000.0


def alert(labels: dict[str, str], summary: str) -> AlertState:
    return AlertState(
        fingerprint="f",
        alertname="DataProductStale",
        subject_key="dataset:scores",
        team="risk",
        severity="warning",
        kind="freshness",
        status="firing",
        starts_at=T0,
        ends_at=None,
        labels=labels,
        annotations={"summary": summary},
    )


def test_a_learned_threshold_says_when_it_is_usually_updated_and_where_the_limit_is_from() -> None:
    summary = "Customer risk scores are 1h 5m stale: usually updated by 06:40 UTC <!channel>"
    text = problem(CATALOG, alert({"dataset": "scores", "source": "learned"}, summary), T0 + 60)
    assert text.startswith("Customer risk scores are 1h 5m stale: usually updated by 06:40 UTC")
    assert "limit learned from history" in text
    assert "<!channel>" not in text  # escaped like every annotation


def test_a_catalog_threshold_keeps_its_wording() -> None:
    text = problem(CATALOG, alert({"dataset": "scores"}, "Scores are stale"), T0 + 60)
    assert "learned" not in text
