"""Cost of task tries and runs: resources x duration x rates, in Decimal (no float drift).

Resources come from the listener's measurement (CPU seconds, peak RSS) when the pipeline's basis
is `measured` and a measurement exists, else from the catalog's pool resources, else the
catalog default. Every try counts, retries included.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from impactwatch.collector.catalog import Catalog
from impactwatch.collector.events import TaskTry

HOUR = Decimal(3600)
GIB = Decimal(1024**3)
CENT = Decimal("0.000001")


def _try_seconds(t: TaskTry) -> Decimal:
    if t.duration is not None:
        return Decimal(str(max(t.duration, 0.0)))
    if t.start is not None and t.end is not None:
        return Decimal(str(max(t.end - t.start, 0.0)))
    return Decimal(0)


def try_cost(t: TaskTry, catalog: Catalog) -> Decimal:
    """The cost of one task try in the catalog's currency."""
    model = catalog.cost
    pipeline = catalog.pipelines.get(t.dag_id)
    basis = pipeline.cost_basis if pipeline is not None else "measured"
    hours = _try_seconds(t) / HOUR
    if basis == "measured" and t.cpu_seconds is not None:
        cpu_hours = Decimal(str(t.cpu_seconds)) / HOUR
        memory_gb = Decimal(t.peak_rss_bytes or 0) / GIB
        cost = cpu_hours * model.rates.cpu_hour + memory_gb * hours * model.rates.memory_gb_hour
    else:
        res = model.pools.get(t.pool or "", model.default_resources)
        cost = hours * (res.cpu * model.rates.cpu_hour + res.memory_gb * model.rates.memory_gb_hour)
    return cost.quantize(CENT)


def run_cost(tries: Iterable[TaskTry], catalog: Catalog) -> Decimal:
    """A run costs the sum of all its task tries."""
    return sum((try_cost(t, catalog) for t in tries), Decimal(0))
