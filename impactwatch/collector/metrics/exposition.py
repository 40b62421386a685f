"""`/metrics` text rendered by prometheus-client, cached per DAG so a scrape stays cheap.

At 10,000 DAGs the exposition holds hundreds of thousands of samples, almost all of them
histograms keyed by DAG that change only when that DAG runs. Each DAG's samples are rendered by
prometheus-client's own `generate_latest` and kept until the state marks the DAG changed; a
scrape renders only the changed DAGs and the small clock-driven part (data products, ages,
deadlines, platform, self-metrics), then joins the pieces family by family. The output is
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


def _families(
    state: MetricsState,
    clock: Callable[[], float],
    part: str,
    dags: Collection[str] | None = None,
) -> Families:
    """generate_latest's text for one part of the state, split into families (HELP first)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ImpactwatchCollector(state, clock, part=part, dags=dags))
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

    def _refresh(self, dirty: Collection[str] | None) -> None:
        keys = self.state.dag_keys()
        if dirty is None:
            self._per_dag.clear()
            self._headers = _families(self.state, self.clock, "dags", dags=())
            dirty = keys
        for dag_id in dirty:
            if dag_id in keys:
                rendered = _families(self.state, self.clock, "dags", dags=(dag_id,))
                self._per_dag[dag_id] = {k: _body(v) for k, v in rendered.items() if _body(v)}
            else:
                self._per_dag.pop(dag_id, None)

    def refresh(self) -> None:
        """Re-render the DAGs that changed; the service calls this after each poll cycle so the
        cost of a large (first, or after a catalog change) render is not a scrape's."""
        with self._lock, self.state.lock:
            self._refresh(self.state.take_dirty())

    def render(self) -> bytes:
        """The whole exposition, identical to generate_latest over the full state."""
        with self._lock, self.state.lock:
            self._refresh(self.state.take_dirty())
            rest = _families(self.state, self.clock, "rest")
            dags = sorted(self._per_dag)
        order = list(rest)
        split = order.index(c.POOL_SLOTS.family)  # DAG families come before the platform's
        parts = [rest[name] for name in order[:split]]
        for name, header in self._headers.items():
            parts.append(header)
            parts.extend(self._per_dag[d].get(name, "") for d in dags)
        parts.extend(rest[name] for name in order[split:])
        return "".join(parts).encode()

    def render_gzip(self) -> bytes:
        return gzip.compress(self.render(), compresslevel=1)
