"""What a write adds to the counters, worked out before its transaction commits. Pure: no I/O.

The collector's writer stages the changes a write saw for the first time on copies of the
series they touch (histogram rows, a DAG's costs, breaches newly counted); the store saves
those copies in the write's transaction (`Counts`), and once it is committed the metrics state
takes them (`commit`). So what /metrics shows is never ahead of the state DB, and after a kill
at any point the series restored on start are exactly the last committed ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Protocol

from impactwatch.collector.cost.tracking import CostTracker, DagCosts
from impactwatch.collector.metrics import persisted
from impactwatch.collector.state.store import Breach, Counts


class Row(Protocol):
    """A histogram as `metrics.state.Histogram` keeps it."""

    series: dict[tuple[str, ...], list[float]]

    def empty_row(self) -> list[float]: ...
    def add(self, row: list[float], value: float) -> None: ...
    def put(self, labels: tuple[str, ...], row: list[float]) -> None: ...


class Counters(Protocol):
    """What staging reads and commits into: `metrics.state.MetricsState`."""

    lock: Any
    histograms: Mapping[str, Row]
    costs: CostTracker
    counted: set[str]
    cost_model_id: str

    def touch(self, dag_id: str) -> None: ...
    def add_breach(self, key: str, labels: tuple[str, ...]) -> None: ...


class Staged:
    """Copies of the series a group of changes touches, with the changes made to them."""

    def __init__(self, state: Counters, now: float) -> None:
        self.state = state
        self.now = now
        self.rows: dict[tuple[str, tuple[str, ...]], list[float]] = {}
        self.costs: dict[str, DagCosts] = {}
        self.breaches: dict[str, Breach] = {}

    def observe(self, name: str, labels: tuple[str, ...], value: float) -> None:
        """One observation into the histogram `name` (a metric name)."""
        row = self.rows.get((name, labels))
        hist = self.state.histograms[name]
        if row is None:
            held = hist.series.get(labels)
            row = list(held) if held is not None else hist.empty_row()
            self.rows[(name, labels)] = row
        hist.add(row, value)

    def record_cost(self, dag_id: str, total: Decimal, tasks: Mapping[str, Decimal]) -> None:
        costs = self.costs.get(dag_id)
        if costs is None:
            costs = self.costs[dag_id] = self.state.costs.copy_of(dag_id)
        self.state.costs.record_into(costs, dag_id, total, tasks)

    def count(self, key: str, labels: tuple[str, str, str, str, str]) -> None:
        """A breach (key with its severity) unless counted already; labels: team, severity,
        kind, dag_id, dataset."""
        if key not in self.state.counted and key not in self.breaches:
            self.breaches[key] = Breach(self.now, *labels)

    def counts(self) -> Counts:
        """What to save in the write's transaction."""
        out = Counts(breaches=dict(self.breaches))
        for (name, labels), row in self.rows.items():
            out.series[persisted.series_key(name, labels)] = (labels[0], persisted.encode_row(row))
        model = self.state.cost_model_id
        for dag_id, costs in self.costs.items():
            key = persisted.series_key(persisted.DAG_COSTS, (dag_id,))
            out.series[key] = (dag_id, persisted.encode_costs(costs, model))
        return out

    def commit(self) -> None:
        """The state takes the staged series (once they are committed to the state DB)."""
        state = self.state
        with state.lock:
            for (name, labels), row in self.rows.items():
                state.histograms[name].put(labels, row)
                state.touch(labels[0])
            for dag_id, costs in self.costs.items():
                state.costs.put(dag_id, costs)
                state.touch(dag_id)
            for key, b in self.breaches.items():
                state.add_breach(key, (b.team, b.severity, b.kind, b.dag_id, b.dataset))
