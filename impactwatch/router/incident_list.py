"""`impactwatch incidents`: the open incidents, most costly first, as rows for a terminal or
JSON (router/impact.py ranks them). Pure: the command reads the router's DB and prints these."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from impactwatch.catalog.model import Catalog
from impactwatch.router import impact as im
from impactwatch.router import wording as w
from impactwatch.router.model import Incident
from impactwatch.router.routing import Lineage, Subject


def what(lineage: Lineage, incident: Incident) -> str:
    """Plain words: "Market prices — out of date", "market_data_ingest — pipeline run failed"."""
    alert = w.main_alert(incident)
    phrase = w.HEADLINES.get(alert.kind, alert.alertname) if alert is not None else "open"
    return f"{lineage.title(incident.subject)} — {phrase}"


def rows(catalog: Catalog, incidents: Iterable[Incident], limit: int) -> list[dict[str, Any]]:
    """One row per open incident, ranked by impact (ties: severity, then age)."""
    lineage = Lineage(catalog)
    out = []
    for rank, (incident, impact) in enumerate(im.ranked(catalog, lineage, incidents), 1):
        if rank > limit:
            break
        titles = [lineage.title(Subject("dataset", n)) for n in impact.products]
        out.append(
            {
                "rank": rank,
                "score": impact.score,
                "severity": incident.severity,
                "team": incident.team,
                "opened_at": datetime.fromtimestamp(incident.opened_at, UTC).isoformat(),
                "acknowledged_by": incident.acked_by,
                "incident": what(lineage, incident),
                "id": incident.id,
                "products": {tier: n for tier, n in impact.by_tier.items() if n},
                "teams": list(impact.teams),
                "impact": im.summary(impact, titles, impact.teams),
                "at_stake": {lineage.title(Subject("dataset", n)): s for n, s in impact.stakes},
            }
        )
    return out


def table(found: list[dict[str, Any]]) -> str:
    """A terminal listing of `rows`."""
    if not found:
        return "No open incidents."
    lines = []
    for row in found:
        ack = f", acknowledged by {row['acknowledged_by']}" if row["acknowledged_by"] else ""
        lines.append(
            f"{row['rank']:>3}. [score {row['score']}] {row['severity']:<8} {row['incident']}"
            f" (team {row['team']}, open since {row['opened_at']}{ack})"
        )
        lines.append(f"     affects {row['impact']}")
        for title, stake in row["at_stake"].items():
            lines.append(f"     at stake for {title}: {stake}")
    return "\n".join(lines)
