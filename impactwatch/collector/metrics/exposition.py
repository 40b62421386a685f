"""`/metrics` text rendered by prometheus-client, cached per DAG and per data product.

At 10,000 DAGs the exposition holds hundreds of thousands of samples, almost all of them
histograms keyed by DAG that change only when that DAG runs. Each DAG's samples are rendered by
prometheus-client's own `generate_latest` and kept until the state marks the DAG changed; so
are each data product's own series (last update, limit and its source, usual update time,
learned history, producers), until its updates, its learned cadence, its producers or the
catalog change (`MetricsState.take_dirty_products`). A scrape renders only what changed and
the small clock-driven part (predictions, ages, deadlines, platform, self-metrics), then joins
the pieces family by family. The output is
byte-for-byte what `generate_latest` gives for the whole state (a unit test holds it to that).
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable, Collection

from prometheus_client import CollectorRegistry, generate_latest

from impactwatch.collector.metrics.exporter import ImpactwatchCollector
from impactwatch.collector.metrics.state import MetricsState
from impactwatch.contract import metrics as c

Families = dict[str, str]
CHUNK = 200  # DAGs rendered per hold of the metrics state's lock (~70 ms)


def _families(
    state: MetricsState,
    clock: Callable[[], float],
    part: str,
    dags: Collection[str] | None = None,
    datasets: Collection[str] | None = None,
) -> Families:
    """generate_latest's text for one part of the state, split into families (HELP first)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ImpactwatchCollector(state, clock, part=part, dags=dags, datasets=datasets))
    text = generate_latest(registry).decode()
    out: Families = {}
    for chunk in text.split("# HELP ")[1:]:
        out[chunk.split(" ", 1)[0]] = "# HELP " + chunk
    return out


def _body(text: str) -> str:
    """A family's samples without its HELP and TYPE lines."""
    return text.split("\n", 2)[2] if text.count("\n") >= 2 else ""


class CachedExposition:
    def __init__(self, state: MetricsState, clock: Callable[[], float] = time.time) -> None:
        self.state = state
        self.clock = clock
        self._lock = threading.Lock()
        self._per_dag: dict[str, Families] = {}
        self._headers: Families = {}
        self._per_product: dict[str, Families] = {}
        self._product_headers: Families = {}

    def _refresh(self) -> None:
        """Re-render the DAGs and data products marked changed, CHUNK at a time under the
        metrics state's lock, so the writer (which changes the state under that lock) waits
        for one chunk at most, never for a whole render (seconds at 10,000 DAGs)."""
        self._refresh_products()
        with self.state.lock:
            dirty = self.state.take_dirty()
            if dirty is None:
                self._per_dag.clear()
                self._headers = _families(self.state, self.clock, "dags", dags=())
                dirty = self.state.dag_keys()
        pending = sorted(dirty)
        for start in range(0, len(pending), CHUNK):
            with self.state.lock:
                keys = self.state.dag_keys()
                for dag_id in pending[start : start + CHUNK]:
                    if dag_id in keys:
                        rendered = _families(self.state, self.clock, "dags", dags=(dag_id,))
                        bodies = {k: _body(v) for k, v in rendered.items() if _body(v)}
                        self._per_dag[dag_id] = bodies
                    else:
                        self._per_dag.pop(dag_id, None)

    def _refresh_products(self) -> None:
        with self.state.lock:
            dirty = self.state.take_dirty_products()
            if dirty is None:
                self._per_product.clear()
                self._product_headers = _families(self.state, self.clock, "products", datasets=())
                dirty = set(self.state.catalog.datasets)
        pending = sorted(dirty)
        for start in range(0, len(pending), CHUNK):
            with self.state.lock:
                names = self.state.catalog.datasets
                for name in pending[start : start + CHUNK]:
                    if name in names:
                        rendered = _families(self.state, self.clock, "products", datasets=(name,))
                        self._per_product[name] = {
                            k: _body(v) for k, v in rendered.items() if _body(v)
                        }
                    else:
                        self._per_product.pop(name, None)

    def refresh(self) -> None:
        """Re-render the DAGs that changed; the collector calls this at start and whenever its
        writer is idle, so the cost of rendering is seldom a scrape's. Never waits for a scrape
        rendering meanwhile: that one renders them."""
        if self._lock.acquire(blocking=False):
            try:
                self._refresh()
            finally:
                self._lock.release()

    def render(self) -> bytes:
        """The whole exposition, identical to generate_latest over the full state."""
        with self._lock:
            self._refresh()
            with self.state.lock:
                rest = _families(self.state, self.clock, "rest")
                products = [n for n in self.state.catalog.datasets if n in self._per_product]
            per_dag, headers = dict(self._per_dag), self._headers
            per_product = {n: self._per_product[n] for n in products}
            product_headers = self._product_headers
        dags = sorted(per_dag)
        order = list(rest)
        split = order.index(c.POOL_SLOTS.family)  # DAG families come before the platform's
        parts = []
        for name, header in product_headers.items():  # data products' families come first
            parts.append(header)
            parts.extend(per_product[n].get(name, "") for n in products)
        parts.extend(rest[name] for name in order[:split])
        for name, header in headers.items():
            parts.append(header)
            parts.extend(per_dag[d].get(name, "") for d in dags)
        parts.extend(rest[name] for name in order[split:])
        return "".join(parts).encode()

    def render_gzip(self) -> bytes:
        return gzip.compress(self.render(), compresslevel=1)
