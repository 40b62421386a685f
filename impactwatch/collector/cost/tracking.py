"""Per-DAG cost accounting for export: the latest run's cost beside the median of the runs
before it, and the spend of the most expensive tasks with bounded labels. Pure: no I/O.

Task labels: each DAG exports its own series for the tasks the catalog names (`cost.tasks`,
and tasks producing a data product) plus its `top_n` most expensive tasks, ranked by their
cost over the DAG's recent runs (the history restored from the state DB, then every run the
collector sees). Every other task's spend goes to the DAG's `(other)` series, a name no Airflow
task can have. A DAG so exports at most `top_n` + named + 1 series; a task leaving the top N
stops being exported (its spend from then on goes to `(other)`), one re-entering resumes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from impactwatch.collector.cost.pricing import ZERO, median

HISTORY = 20
"""The median is taken over this many runs before the latest."""
COST_HISTORY_RUNS = HISTORY + 1
"""Runs per DAG kept (and restored after a restart): the latest and the HISTORY before it."""
MIN_HISTORY = 5
"""No median (so no anomaly alert) until a DAG has this many runs before its latest."""
OTHER = "(other)"
"""The task label of every task without its own series (Airflow ids cannot hold parentheses)."""


@dataclass
class DagCosts:
    recent: deque[Decimal] = field(default_factory=lambda: deque(maxlen=COST_HISTORY_RUNS))
    ranking: dict[str, Decimal] = field(default_factory=dict)  # task id -> recent cost
    series: dict[str, Decimal] = field(default_factory=dict)  # label -> spend since start
    shown: frozenset[str] = frozenset()


class CostTracker:
    """Run and task costs per DAG; `named` maps a DAG id to the task ids the catalog names."""

    def __init__(self, top_n: int, named: Mapping[str, frozenset[str]] | None = None) -> None:
        self.top_n = top_n
        self.named: dict[str, frozenset[str]] = dict(named or {})
        self.dags: dict[str, DagCosts] = {}

    def configure(self, top_n: int, named: Mapping[str, frozenset[str]]) -> None:
        """A new catalog: re-rank every DAG with its limits."""
        self.top_n, self.named = top_n, dict(named)
        for dag_id, costs in self.dags.items():
            costs.shown = self._shown(dag_id, costs)

    def _shown(self, dag_id: str, costs: DagCosts) -> frozenset[str]:
        ranked = sorted(costs.ranking.items(), key=lambda kv: (-kv[1], kv[0]))
        top = {task for task, amount in ranked[: self.top_n] if amount > 0}
        return frozenset(top | self.named.get(dag_id, frozenset()))

    def seed(self, dag_id: str, totals: Iterable[Decimal], ranking: Mapping[str, Decimal]) -> None:
        """The DAG's recent history: its runs' costs (oldest first) and each task's cost over
        them. The spend series are left as they are (restored as counted, never re-priced)."""
        costs = self.dags.setdefault(dag_id, DagCosts())
        costs.recent.clear()
        costs.recent.extend(totals)
        costs.ranking = dict(ranking)
        costs.shown = self._shown(dag_id, costs)

    def record(self, dag_id: str, total: Decimal, tasks: Mapping[str, Decimal]) -> None:
        """A run finished: its cost, and each task's (all its tries and map indexes)."""
        self.record_into(self.dags.setdefault(dag_id, DagCosts()), dag_id, total, tasks)

    def copy_of(self, dag_id: str) -> DagCosts:
        """A copy of the DAG's costs to record into before they are taken (`record_into`)."""
        costs = self.dags.get(dag_id)
        if costs is None:
            return DagCosts()
        return DagCosts(
            deque(costs.recent, maxlen=COST_HISTORY_RUNS),
            dict(costs.ranking),
            dict(costs.series),
            costs.shown,
        )

    def record_into(
        self, costs: DagCosts, dag_id: str, total: Decimal, tasks: Mapping[str, Decimal]
    ) -> None:
        """`record` into `costs` (the DAG's, or a copy of them)."""
        costs.recent.append(total)
        for task, amount in tasks.items():
            costs.ranking[task] = costs.ranking.get(task, ZERO) + amount
        costs.shown = self._shown(dag_id, costs)
        for task, amount in tasks.items():
            label = task if task in costs.shown else OTHER
            costs.series[label] = costs.series.get(label, ZERO) + amount

    def put(self, dag_id: str, costs: DagCosts) -> None:
        """The DAG's costs, as recorded into a copy or restored; shown tasks by today's limits."""
        costs.shown = self._shown(dag_id, costs)
        self.dags[dag_id] = costs

    def last(self, dag_id: str) -> Decimal | None:
        costs = self.dags.get(dag_id)
        return costs.recent[-1] if costs is not None and costs.recent else None

    def median_before_last(self, dag_id: str) -> Decimal | None:
        """Median cost of the (up to HISTORY) runs before the latest; None under MIN_HISTORY."""
        costs = self.dags.get(dag_id)
        if costs is None or len(costs.recent) - 1 < MIN_HISTORY:
            return None
        return median(list(costs.recent)[:-1])

    def task_series(self, dag_id: str) -> list[tuple[str, Decimal]]:
        """(task label, spend) to export: shown tasks with spend, then `(other)`."""
        costs = self.dags.get(dag_id)
        if costs is None:
            return []
        rows = [(t, costs.series[t]) for t in sorted(costs.shown) if t in costs.series]
        if OTHER in costs.series:
            rows.append((OTHER, costs.series[OTHER]))
        return rows

    def drop(self, dag_ids: Iterable[str]) -> None:
        for dag_id in dag_ids:
            self.dags.pop(dag_id, None)
