"""How counter and histogram series are kept in the state DB (`iw_series`), so that each one
continues from where it was after a restart. Pure: no I/O.

A row's key is the series' name and its label values joined by the key separator; its value
is text that gives back exactly what the process held (floats by their repr, `Decimal`s as
strings), so a restored series is never a ULP below what Prometheus scraped before:

- a histogram series (`impactwatch_dag_run_duration_seconds`, `..._schedule_delay_seconds`,
  `impactwatch_task_queued_seconds`, `impactwatch_dag_run_cost_dollars`): the JSON list of
  per-bucket counts, then the sum and the count, as `metrics.state.Histogram` keeps it;
- a DAG's costs (`DAG_COSTS`): its recent runs' costs, its tasks' ranking and spend per task
  label (`impactwatch_task_cost_dollars_total`), and the cost model they were priced with.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from impactwatch.catalog.model import CostModel
from impactwatch.collector.cost.tracking import COST_HISTORY_RUNS, DagCosts
from impactwatch.collector.events import SEP
from impactwatch.contract import metrics as c

HISTOGRAMS = (c.DAG_RUN_DURATION, c.DAG_RUN_SCHEDULE_DELAY, c.TASK_QUEUED, c.DAG_RUN_COST)
DAG_COSTS = "dag_costs"
_KINDS = {spec.name for spec in HISTOGRAMS} | {DAG_COSTS}


class BadSeries(ValueError):
    """A stored series this version cannot read (written by another, or damaged)."""


def series_key(kind: str, labels: Iterable[str]) -> str:
    return SEP.join((kind, *labels))


def split_key(key: str) -> tuple[str, tuple[str, ...]]:
    kind, *labels = key.split(SEP)
    if kind not in _KINDS:
        raise BadSeries(f"unknown series {kind!r}")
    return kind, tuple(labels)


def encode_row(row: list[float]) -> str:
    return json.dumps(row)


def decode_row(text: str, buckets: int) -> list[float]:
    row = json.loads(text)
    if not isinstance(row, list) or len(row) != buckets + 2:
        raise BadSeries(f"a histogram row of {buckets} buckets expected, got {text[:80]!r}")
    return [float(v) for v in row]


def model_fingerprint(model: CostModel) -> str:
    """Identifies a cost model: recent costs priced with another are priced again on start."""
    return hashlib.sha256(model.model_dump_json().encode()).hexdigest()[:16]


def encode_costs(costs: DagCosts, model: str) -> str:
    return json.dumps(
        {
            "model": model,
            "recent": [str(v) for v in costs.recent],
            "ranking": {k: str(v) for k, v in costs.ranking.items()},
            "series": {k: str(v) for k, v in costs.series.items()},
        },
        sort_keys=True,
    )


@dataclass
class StoredCosts:
    costs: DagCosts
    model: str


def decode_costs(text: str) -> StoredCosts:
    data = json.loads(text)
    try:
        costs = DagCosts()
        costs.recent.extend(Decimal(v) for v in data["recent"][-COST_HISTORY_RUNS:])
        costs.ranking = {str(k): Decimal(v) for k, v in data["ranking"].items()}
        costs.series = {str(k): Decimal(v) for k, v in data["series"].items()}
        return StoredCosts(costs, str(data["model"]))
    except (KeyError, TypeError, AttributeError, ArithmeticError) as exc:
        raise BadSeries(f"a DAG's costs expected, got {text[:80]!r}") from exc


@dataclass
class Restored:
    """Every stored series, decoded: histogram rows by metric name, then labels; costs by DAG."""

    histograms: dict[str, dict[tuple[str, ...], list[float]]]
    costs: dict[str, StoredCosts]
    unreadable: int = 0


def decode_series(rows: Iterable[tuple[str, str]]) -> Restored:
    """(key, value) rows of `iw_series` into what `MetricsState.restore_counters` takes; a row
    this version cannot read is counted and left out (never a reason not to start)."""
    buckets = {spec.name: len(spec.buckets) for spec in HISTOGRAMS}
    out = Restored({name: {} for name in buckets}, {})
    for key, value in rows:
        try:
            kind, labels = split_key(key)
            if kind == DAG_COSTS:
                (dag_id,) = labels
                out.costs[dag_id] = decode_costs(value)
            else:
                out.histograms[kind][labels] = decode_row(value, buckets[kind])
        except (BadSeries, ValueError):
            out.unreadable += 1
    return out


def histogram_rows(name: str, series: Mapping[tuple[str, ...], list[float]]) -> dict[str, str]:
    return {series_key(name, labels): encode_row(row) for labels, row in series.items()}
