"""What an incident costs the business: its blast radius and its rank. Pure.

The blast radius of an incident is the data products it puts at risk: those of its subject
(a data product, or what a pipeline produces, as the catalog says or as the alerts' `producers`
annotation says Airflow declares it), every product downstream of them in the catalog's
lineage, and the products of the alerts folded into it. Each counts by its tier; the teams are
the products' owners; the catalog's `impact` text says what is at stake.

Ranking: by impact score, the tier-weighted count of affected products (`TIER_WEIGHT`:
critical 10, high 3, standard 1), then severity, then the oldest first. An incident with no
data product in the catalog (a platform alert) scores 0 and sorts by severity and age.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from impactwatch.catalog.model import Catalog
from impactwatch.contract import alerts
from impactwatch.router.model import Incident
from impactwatch.router.producers import learn
from impactwatch.router.routing import Lineage

TIER_WEIGHT = {"critical": 10, "high": 3, "standard": 1}
TIERS = ("critical", "high", "standard")


@dataclass(frozen=True)
class Impact:
    products: tuple[str, ...]  # names, most important first (tier, then title)
    by_tier: dict[str, int]
    teams: tuple[str, ...]
    stakes: tuple[tuple[str, str], ...]  # (product name, the catalog's `impact` text)
    score: int


def blast_radius(catalog: Catalog, lineage: Lineage, incident: Incident) -> Impact:
    """The data products `incident` puts at risk, by tier, their teams, and its score."""
    learned = learn(a.annotations for a in incident.alerts.values())
    roots = set(lineage.datasets_of(incident.subject, learned))
    for alert in incident.alerts.values():
        if alert.status != "resolved":
            roots |= lineage.datasets_of(alert.subject, learned)
    names = set(roots)
    for name in roots:
        names |= lineage.downstream(name)
    known = [catalog.datasets[n] for n in names if n in catalog.datasets]
    known.sort(key=lambda d: (TIERS.index(d.tier), d.title.lower(), d.name))
    by_tier = {tier: sum(d.tier == tier for d in known) for tier in TIERS}
    teams = sorted({d.team for d in known if d.team})
    stakes = tuple((d.name, d.impact) for d in known if d.impact)
    score = sum(TIER_WEIGHT[d.tier] for d in known)
    return Impact(tuple(d.name for d in known), by_tier, tuple(teams), stakes, score)


def rank_key(incident: Incident, impact: Impact) -> tuple[float, ...]:
    """Sort key: highest impact first, then most severe, then oldest."""
    return (-impact.score, -alerts.SEVERITY_RANK.get(incident.severity, 0), incident.opened_at)


def ranked(
    catalog: Catalog, lineage: Lineage, incidents: Iterable[Incident]
) -> list[tuple[Incident, Impact]]:
    """Open incidents, most costly first (ties: severity, then age, then id)."""
    scored = [(i, blast_radius(catalog, lineage, i)) for i in incidents if i.status == "open"]
    scored.sort(key=lambda pair: (*rank_key(*pair), pair[0].id))
    return scored


def tier_counts(impact: Impact) -> str:
    """ "1 critical, 2 high" (tiers with none left out)."""
    return ", ".join(f"{n} {tier}" for tier in TIERS if (n := impact.by_tier.get(tier, 0)))


def summary(impact: Impact, titles: Sequence[str], teams: Sequence[str]) -> str:
    """ "3 data products (1 critical, 2 high): Market prices, …; teams markets, risk", from
    `titles` and `teams` as given (escaped by the caller for Slack, plain for a terminal)."""
    if not impact.products:
        return "no data product in the catalog"
    count = len(impact.products)
    shown = ", ".join(titles[:5]) + (f" and {count - 5} more" if count > 5 else "")
    noun = "data product" if count == 1 else "data products"
    return f"{count} {noun} ({tier_counts(impact)}): {shown}; teams {', '.join(teams) or '—'}"
