"""The bill beside the estimate: AWS Cost Explorer's daily cost per DAG against impactwatch's.
Pure: pages in, comparison out.

Cost Explorer groups cost by a cost allocation tag (`airflow_dag_id` by default) that the
resources running a DAG's tasks carry: `get_cost_and_usage` answers one group per tag value,
keyed "<tag key>$<value>" ("airflow_dag_id$" for untagged cost). A value naming a DAG the
estimate or the catalog knows is that DAG's actual cost; the rest (untagged, unknown values) is
unattributed, reported as one figure so labels stay bounded. Estimates split each task try
across the UTC days it ran on (`Pricing.cost_by_day`), as the bill accrues.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from impactwatch.collector.cost.pricing import ZERO

DEFAULT_TAG_KEY = "airflow_dag_id"
DEFAULT_METRIC = "UnblendedCost"


def window(today: date, days: int, lag_days: int) -> list[date]:
    """The `days` complete UTC days ending `lag_days` before `today` (1, 1: yesterday)."""
    last = today - timedelta(days=lag_days)
    return [last - timedelta(days=n) for n in range(days - 1, -1, -1)]


@dataclass
class ActualCosts:
    """What Cost Explorer answered, by (tag value, day); "" is untagged cost."""

    by_tag: dict[str, dict[date, Decimal]] = field(default_factory=dict)
    currency: str | None = None
    estimated: bool = False  # Cost Explorer marks recent days' figures as still estimated

    def add(self, value: str, day: date, amount: Decimal) -> None:
        days = self.by_tag.setdefault(value, {})
        days[day] = days.get(day, ZERO) + amount


class CostExplorerAnswerError(ValueError):
    """An answer that is not shaped as `get_cost_and_usage`'s."""


def parse_pages(pages: Iterable[Mapping[str, Any]], tag_key: str, metric: str) -> ActualCosts:
    """Cost Explorer's answer pages (DAILY granularity, grouped by one tag) as `ActualCosts`."""
    actual = ActualCosts()
    prefix = f"{tag_key}$"
    for page in pages:
        for period in page.get("ResultsByTime", ()) or ():
            try:
                day = date.fromisoformat(period["TimePeriod"]["Start"])
            except (KeyError, TypeError, ValueError):
                raise CostExplorerAnswerError(
                    f"a result has no TimePeriod: {period!r:.120}"
                ) from None
            actual.estimated |= bool(period.get("Estimated"))
            for group in period.get("Groups", ()) or ():
                keys = group.get("Keys") or [""]
                key = str(keys[0])
                value = key[len(prefix) :] if key.startswith(prefix) else key
                amount = group.get("Metrics", {}).get(metric)
                if not amount:
                    continue
                try:
                    figure = Decimal(str(amount["Amount"]))
                except (KeyError, TypeError, InvalidOperation):
                    raise CostExplorerAnswerError(f"no {metric} amount in {group!r:.120}") from None
                unit = amount.get("Unit")
                if unit:
                    actual.currency = actual.currency or str(unit)
                actual.add(value, day, figure)
    return actual


@dataclass(frozen=True)
class DagReconciliation:
    """One DAG's actual and estimated cost per day over the window, and their ratio (None
    where either is zero: nothing to compare)."""

    dag_id: str
    actual: Decimal
    estimated: Decimal

    @property
    def ratio(self) -> Decimal | None:
        if self.actual <= 0 or self.estimated <= 0:
            return None
        return self.actual / self.estimated


@dataclass(frozen=True)
class Reconciliation:
    days: tuple[date, ...]
    rows: tuple[DagReconciliation, ...]
    unattributed: Decimal  # per day
    currency: str | None
    estimated: bool


def reconcile(
    actual: ActualCosts,
    estimates: Mapping[str, Mapping[date, Decimal]],
    days: Collection[date],
    known_dags: Collection[str] = (),
) -> Reconciliation:
    """Per DAG, the bill's and the estimate's cost per day, averaged over `days`."""
    window_days = tuple(sorted(days))
    span = Decimal(max(len(window_days), 1))
    known = set(estimates) | set(known_dags)

    def total(per_day: Mapping[date, Decimal]) -> Decimal:
        return sum((per_day.get(d, ZERO) for d in window_days), ZERO)

    rows = []
    unattributed = ZERO
    for value, per_day in actual.by_tag.items():
        if value not in known:
            unattributed += total(per_day)
    for dag_id in sorted(known):
        spent = total(actual.by_tag.get(dag_id, {}))
        guessed = total(estimates.get(dag_id, {}))
        if spent or guessed:
            rows.append(DagReconciliation(dag_id, spent / span, guessed / span))
    return Reconciliation(
        window_days, tuple(rows), unattributed / span, actual.currency, actual.estimated
    )
