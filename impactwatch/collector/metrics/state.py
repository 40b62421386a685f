"""In-memory business state the exporter reads at scrape time. Pure: no I/O, time passed in.

The service feeds it `Changes` from the store (facts seen for the first time) and snapshots
from the poller (running runs, pools, scheduler); `evaluate(now)` decides SLA breaches with the
severity ladder and returns the breach keys to persist, so a restart never counts one twice.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import defaultdict, deque
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from impactwatch.catalog.deadlines import next_unmet_deadline
from impactwatch.catalog.model import Catalog, CostModel, Dataset
from impactwatch.collector.baselines.durations import Usual as UsualDuration
from impactwatch.collector.baselines.learner import (
    Baselines,
    asset_source,
    dag_source,
    feed,
    task_source,
)
from impactwatch.collector.baselines.predict import Pace, pace, pace_unstarted
from impactwatch.collector.baselines.thresholds import learned_freshness, learned_max_duration
from impactwatch.collector.cost.history import DagHistory
from impactwatch.collector.cost.pricing import ZERO, Pricing
from impactwatch.collector.cost.tracking import CostTracker
from impactwatch.collector.events import AssetUpdate, DagRun, TaskTry
from impactwatch.collector.metrics import persisted
from impactwatch.collector.metrics.due import DueQueue
from impactwatch.collector.metrics.staged import Staged
from impactwatch.collector.state.store import Changes, Counts, Summary
from impactwatch.contract import metrics as c

log = logging.getLogger(__name__)

XCOM_WINDOW = 86400.0
FUTURE_TOLERANCE = 300.0  # a timestamp further ahead than this is clock skew: clamp to now
CATALOG, LEARNED = "catalog", "learned"  # where a threshold comes from (label `source`)


@dataclass(frozen=True, slots=True)
class LearnedDuration:
    """The learned duration limit of a DAG's oldest run in flight (started at `start`): for
    its seasonal bucket, with the usual duration it comes from."""

    start: float
    limit: float
    usual: UsualDuration


@dataclass(frozen=True, slots=True)
class ExpectedUpdate:
    """A data product's next update as the pace of the run that makes it says (predict.py):
    `expected`, against `due` (its last update plus its limit, the catalog's or learned)."""

    expected: float
    due: float
    dag_id: str
    at: str  # the task the run is at ("": not started)
    behind: float


POOLS_PER_DAG = 16
"""Pool label values a DAG's queued-time histogram takes beyond the pools Airflow has (the
poller's last read); tries in any further pool are observed under OTHER."""
OTHER = "(other)"  # as the cost series' task label: no Airflow pool or task id has parentheses


class Histogram:
    """Per-bucket counts per label tuple (made cumulative at export); DAG-keyed when the first
    label is a dag_id, with an index so one DAG's series are found without a scan."""

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.series: dict[tuple[str, ...], list[float]] = {}
        self.by_dag: dict[str, list[tuple[str, ...]]] = {}

    def observe(self, labels: tuple[str, ...], value: float) -> None:
        row = self.series.get(labels)
        if row is None:
            row = self.empty_row()
            self.put(labels, row)
        self.add(row, value)

    def empty_row(self) -> list[float]:
        return [0.0] * (len(self.buckets) + 2)

    def add(self, row: list[float], value: float) -> None:
        """One observation into `row` (this histogram's, or a copy of one)."""
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                row[i] += 1
                break
        row[-2] += value
        row[-1] += 1

    def put(self, labels: tuple[str, ...], row: list[float]) -> None:
        """A series' row as a whole (staged, or restored)."""
        if labels not in self.series and labels:
            self.by_dag.setdefault(labels[0], []).append(labels)
        self.series[labels] = row

    def items(
        self, dags: Collection[str] | None = None
    ) -> Iterable[tuple[tuple[str, ...], list[float]]]:
        if dags is None:
            yield from self.series.items()
            return
        for dag_id in dags:
            for labels in self.by_dag.get(dag_id, ()):
                yield labels, self.series[labels]

    def drop_dags(self, dag_ids: set[str]) -> None:
        for dag_id in dag_ids:
            for labels in self.by_dag.pop(dag_id, ()):
                del self.series[labels]


@dataclass
class DagInfo:
    paused: bool = False


@dataclass
class SelfStats:
    """The collector's own health, exported as `impactwatch_collector_*`."""

    poll_duration: Histogram = field(default_factory=lambda: Histogram(c.POLL_BUCKETS))
    rows_read: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    events: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    db_errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    last_poll: float | None = None
    stale: bool = True
    stale_reason: str | None = None  # set while a failed or late cycle leaves the state stale
    _counting: threading.Lock = field(default_factory=threading.Lock)

    def count(self, source: str, outcome: str, n: int = 1) -> None:
        """Count events by source and outcome; from any thread (the intake counts refusals)."""
        with self._counting:
            self.events[(source, outcome)] += n

    def event_counts(self) -> dict[tuple[str, str], int]:
        with self._counting:
            return dict(self.events)


class MetricsState:
    def __init__(self, catalog: Catalog) -> None:
        # Changed by the collector's writer thread only; held by it while it changes anything,
        # and by a scrape while it reads.
        self.lock = threading.RLock()
        self.catalog = catalog
        self.dags: dict[str, DagInfo] = {}
        self.last_success: dict[str, float] = {}
        self.last_failure: dict[str, float] = {}
        self.task_success: dict[tuple[str, str], float] = {}  # of tasks producing a dataset
        self._producer_tasks = _producer_tasks(catalog)
        self._asset_uris = _asset_uris(catalog)
        self.pricing = Pricing(catalog)
        self.costs = CostTracker(catalog.cost.top_tasks, _named_tasks(catalog))
        self._history_priced_with: CostModel | None = None  # cost model of the restored history
        self.asset_updates: dict[str, float] = {}
        self.running: dict[tuple[str, str], float] = {}
        self.duration = Histogram(c.DAG_RUN_DURATION.buckets)
        self.delay = Histogram(c.DAG_RUN_SCHEDULE_DELAY.buckets)
        self.queued = Histogram(c.TASK_QUEUED.buckets)
        self.cost = Histogram(c.DAG_RUN_COST.buckets)
        self.histograms = {
            c.DAG_RUN_DURATION.name: self.duration,
            c.DAG_RUN_SCHEDULE_DELAY.name: self.delay,
            c.TASK_QUEUED.name: self.queued,
            c.DAG_RUN_COST.name: self.cost,
        }
        self.cost_model_id = persisted.model_fingerprint(self.pricing.model)
        self.breaches: dict[tuple[str, ...], int] = defaultdict(int)
        self._breaches_by_dag: dict[str, list[tuple[str, ...]]] = {}
        self._dirty: set[str] | None = None  # DAGs whose series changed; None: all of them
        self.counted: set[str] = set()
        self.pools: dict[str, dict[str, int]] = {}
        self.xcom: dict[str, deque[tuple[float, int]]] = {}
        self.import_errors: int | None = None
        self.heartbeat: float | None = None
        self.missed_airflow_deadlines: dict[str, list[tuple[str, float]]] = {}
        # Asset URI -> (dag_id, task_id) writing it: the tasks' declared outlets, and the
        # sources of its events (kept for DAGs Airflow knows, so the set stays bounded).
        self.asset_producers: dict[str, set[tuple[str, str]]] = {}
        self.asset_sources: dict[str, set[tuple[str, str]]] = {}
        self._asset_producers_before: dict[str, set[tuple[str, str]]] = {}
        self._paused: frozenset[str] = frozenset()
        self.baselines = Baselines()
        self.baselines.configure(_update_sources(catalog))
        # Facts fed while a history read is in flight (`new_baselines`), and which read is the
        # latest: an older one's baselines are never installed.
        self._relearning: (
            list[tuple[list[tuple[DagRun, list[TaskTry]]], list[AssetUpdate], list[TaskTry] | None]]
            | None
        ) = None
        self._generation = 0
        # The oldest run in flight of each DAG, and the learned duration limit for it (DAGs
        # the catalog gives no max_duration): kept by the writer as runs start, end and are
        # learned, so a scrape only reads them (`_refresh_learned`).
        self._oldest: dict[str, float] = {}
        self.learned_durations: dict[str, LearnedDuration] = {}
        # Predicted misses (`predict`, each poll cycle): the tasks each run in flight has
        # finished, the pace of each DAG's oldest run (or of a run late to start), and the
        # expected next update of each data product they make.
        self._finished_tasks: dict[tuple[str, str], dict[str, float]] = {}
        self.paces: dict[str, Pace] = {}
        self.expected_updates: dict[str, ExpectedUpdate] = {}
        self._made_by = _made_by(catalog)
        # Not every product and DAG every cycle (10,000 of each): a product is checked for a
        # breach once its last update plus its limit has passed (`_product_due`, set again
        # when its update, its learned cadence or the catalog changes: `_products_changed`),
        # a DAG making one for a late start once its usual start has (`_late_starts`).
        self._products_of = _products_of(catalog)
        self._product_due = DueQueue()
        self._stale_products: set[str] | None = None  # due times to set again; None: all
        self._dirty_products: set[str] | None = None  # for the exposition; None: all
        self._late_starts = DueQueue()
        self._starts_changed: set[str] = set()
        self._all_starts_stale = True
        self.self_stats = SelfStats()

    # --- what changed since the exposition was last rendered ---------------------------------
    def touch(self, dag_id: str) -> None:
        if self._dirty is not None:
            self._dirty.add(dag_id)

    _touch = touch

    def take_dirty(self) -> set[str] | None:
        """DAGs whose DAG-keyed series changed since the last call (None: all)."""
        with self.lock:
            dirty, self._dirty = self._dirty, set()
            return dirty

    def take_dirty_products(self) -> set[str] | None:
        """Data products whose own series changed since the last call (None: all)."""
        with self.lock:
            dirty, self._dirty_products = self._dirty_products, set()
            return dirty

    def _products_changed(self, sources: Iterable[str] | None) -> None:
        """The products refreshed by these update sources (learner.py keys; None: every
        product) changed their last update or learned cadence."""
        if sources is None:
            self._stale_products = self._dirty_products = None
            return
        for source in sources:
            for name in self._products_of.get(source, ()):
                if self._stale_products is not None:
                    self._stale_products.add(name)
                if self._dirty_products is not None:
                    self._dirty_products.add(name)

    def dag_keys(self) -> set[str]:
        """Every DAG that has a DAG-keyed series."""
        with self.lock:
            keys = set(self.last_success) | set(self.last_failure) | set(self.dags)
            keys |= set(self.xcom) | set(self._breaches_by_dag) | set(self.costs.dags)
            keys |= {d for d, p in self.catalog.pipelines.items() if p.max_duration}
            keys |= set(self.learned_durations)
            for hist in (self.duration, self.delay, self.queued, self.cost):
                keys |= set(hist.by_dag)
            return keys

    def breach_labels(self, dags: Collection[str] | None) -> list[tuple[str, ...]]:
        if dags is None:
            return list(self.breaches)
        return [labels for d in dags for labels in self._breaches_by_dag.get(d, ())]

    # --- configuration ----------------------------------------------------------------------
    def set_catalog(self, catalog: Catalog) -> None:
        with self.lock:
            if catalog != self.catalog:
                self._dirty = None  # teams and limits may have changed anywhere
                self._products_changed(None)
                self._all_starts_stale = True
                if catalog.cost != self.catalog.cost:
                    self.pricing = Pricing(catalog)
                    self.cost_model_id = persisted.model_fingerprint(self.pricing.model)
                self.costs.configure(catalog.cost.top_tasks, _named_tasks(catalog))
            self.catalog = catalog
            self._producer_tasks = _producer_tasks(catalog)
            self._asset_uris = _asset_uris(catalog)
            self.baselines.configure(_update_sources(catalog))
            self._refresh_learned(self._oldest)  # a catalog max_duration wins, or no longer
            self._made_by = _made_by(catalog)
            self._products_of = _products_of(catalog)

    def set_dags(
        self,
        dags: Mapping[str, DagInfo],
        asset_producers: Mapping[str, Iterable[tuple[str, str]]] | None = None,
    ) -> None:
        """The DAGs Airflow knows now (and the (dag_id, task_id) writing each Asset URI). Series
        of any other DAG go away: deleted DAGs', and any restored from a state DB that holds
        DAGs Airflow does not know (the intake keeps new ones out: `Batch.held_dags`). The
        service forgets in the store only the DAGs a previous list had (`_set_declarations`)."""
        with self.lock:
            if asset_producers is not None:
                self.asset_producers = {uri: set(d) for uri, d in asset_producers.items()}
            gone = (set(self.dags) | self._observed_dags()) - set(dags)
            if (
                dags.keys() != self.dags.keys()
                or self.asset_producers != self._asset_producers_before
                or frozenset(d for d, info in dags.items() if info.paused) != self._paused
            ):
                self._dirty_products = None  # producers and paused flags of products
            self._asset_producers_before = self.asset_producers
            for dag_id, info in dags.items():
                if self.dags.get(dag_id) != info:
                    self._touch(dag_id)
            for dag_id in gone:
                self._touch(dag_id)
            self.dags = dict(dags)
            self._paused = frozenset(d for d, info in dags.items() if info.paused)
            if gone:
                for store in (self.last_success, self.last_failure, self.xcom):
                    for dag_id in gone & set(store):
                        del store[dag_id]
                for hist in (self.duration, self.delay, self.queued, self.cost):
                    hist.drop_dags(gone)
                self.costs.drop(gone)
                self.baselines.forget(gone)
                self.running = {k: v for k, v in self.running.items() if k[0] not in gone}
                self._refresh_learned()

    def restore(
        self,
        summary: Summary,
        cost_history: Callable[[Pricing], Mapping[str, DagHistory]] | None = None,
    ) -> None:
        """State after a restart, from the store: nothing observed twice, nothing lost."""
        with self.lock:
            self._products_changed(None)
            self.last_success.update(summary.last_success)
            self.last_failure.update(summary.last_failure)
            self.task_success.update(
                (k, v) for k, v in summary.task_success.items() if k in self._producer_tasks
            )
            self.asset_updates.update(
                (uri, ts) for uri, ts in summary.asset_updates.items() if uri in self._asset_uris
            )
            self.counted |= summary.breaches
            cost = self.catalog.cost
            if cost_history is None or cost == self._history_priced_with:
                return  # after a catalog change that left the cost model alone: still right
        pricing = self.pricing
        history = cost_history(pricing)  # a long read: scrapes go on meanwhile
        with self.lock:
            for dag_id, dag in history.items():
                self.costs.seed(dag_id, dag.totals, dag.ranking)
            self._history_priced_with = pricing.model

    @property
    def producer_tasks(self) -> frozenset[tuple[str, str]]:
        """(dag_id, task_id) of tasks whose success refreshes a data product."""
        return self._producer_tasks

    def restore_counters(
        self,
        restored: persisted.Restored,
        breaches: Iterable[tuple[tuple[str | None, ...], int]],
        xcom_sizes: Iterable[tuple[str, float, int]],
        now: float,
    ) -> bool:
        """Every counter and histogram series as the state DB holds it (as the last committed
        write left it), breaches by their labels, the last day's XCom sizes. True when the
        DAGs' recent costs must be priced again: none stored, or priced with another model."""
        with self.lock:
            self._dirty = None
            for name, series in restored.histograms.items():
                hist = self.histograms[name]
                for labels, row in series.items():
                    hist.put(labels, row)
            for dag_id, stored in restored.costs.items():
                self.costs.put(dag_id, stored.costs)
            for labels, n in breaches:
                self.add_breaches(self._breach_labels(labels), n)
        self.record_xcom(xcom_sizes, now)
        models = {stored.model for stored in restored.costs.values()}
        if models != {self.cost_model_id}:
            return True
        self._history_priced_with = self.pricing.model
        return False

    def _breach_labels(self, labels: tuple[str | None, ...]) -> tuple[str, ...]:
        """A stored breach's labels; those a row from before they were kept lacks (its team,
        a freshness breach's DAG) as the catalog says now."""
        team, severity, kind, dag_id, dataset = labels
        if dag_id is None:
            ds = self.catalog.datasets.get(dataset or "")
            dag_id = self.producer_dag(ds) if ds is not None else ""
        if team is None:
            if kind == "freshness":
                team = self.catalog.team_of_dataset(dataset or "")
            else:
                team = self.team(dag_id)
        return (team, severity or "", kind or "", dag_id, dataset or "")

    def cost_counts(self) -> Counts:
        """Every DAG's costs as rows to store (after they were priced again on start)."""
        out = Counts()
        with self.lock:
            for dag_id, costs in self.costs.dags.items():
                key = persisted.series_key(persisted.DAG_COSTS, (dag_id,))
                out.series[key] = (dag_id, persisted.encode_costs(costs, self.cost_model_id))
        return out

    # --- facts ------------------------------------------------------------------------------
    def team(self, dag_id: str) -> str:
        return self.catalog.team_of_pipeline(dag_id)

    def apply(self, changes: Changes, source: str, now: float) -> None:
        """Observe what the store saw for the first time (counters and the rest at once; the
        collector's writer stages the counters inside the store's transaction instead)."""
        self.stage([changes], now).commit()
        self.apply_facts(changes, source, now)

    def stage(self, changes: list[Changes], now: float) -> Staged:
        """What these changes add to the counters and histograms, on copies (staged.py): the
        writer saves them with the facts, then commits them here. Changes nothing."""
        staged = Staged(self, now)
        pools: dict[str, set[str]] = {}  # per DAG: pool labels of its queued-time series
        for seen in changes:
            for t in seen.queued_tries:
                wait = max((t.start or 0.0) - (t.queued or 0.0), 0.0)
                pool = self._pool_label(t.dag_id, t.pool or "default_pool", pools)
                labels = (t.dag_id, self.team(t.dag_id), pool)
                staged.observe(c.TASK_QUEUED.name, labels, wait)
            for r in seen.started_runs:
                delay = max((r.start or 0.0) - (r.run_after or 0.0), 0.0)
                labels = (r.dag_id, self.team(r.dag_id))
                staged.observe(c.DAG_RUN_SCHEDULE_DELAY.name, labels, delay)
            for r, tries in seen.finished_runs:
                team = self.team(r.dag_id)
                start = r.start if r.start is not None else r.queued_at
                took = max((r.end or 0.0) - start, 0.0) if start is not None else 0.0
                labels = (r.dag_id, team, r.state or "unknown")
                staged.observe(c.DAG_RUN_DURATION.name, labels, took)
                tasks = self.pricing.task_costs(tries)  # every try: retries, map indexes
                total = sum(tasks.values(), ZERO)
                staged.observe(c.DAG_RUN_COST.name, (r.dag_id, team), float(total))
                staged.record_cost(r.dag_id, total, tasks)
                self._check_duration(staged, r.dag_id, r.run_id, start or 0.0, took)
        return staged

    def apply_facts(self, changes: Changes, source: str, now: float) -> None:
        """What the changes tell beyond the counters: last successes and failures, data
        products' updates, runs no longer in flight, events by outcome."""
        with self.lock:
            for outcome, n in changes.outcomes.items():
                self.self_stats.count(source, outcome, n)
            self.learn(changes.finished_runs, changes.assets, changes.queued_tries)
            sources: set[str] = set()
            for t in changes.succeeded_tries:
                if t.end is not None and (t.dag_id in self.dags or not self.dags):
                    done = self._finished_tasks.setdefault((t.dag_id, t.run_id), {})
                    done[t.task_id] = t.end
                key = (t.dag_id, t.task_id)
                if t.end is not None and key in self._producer_tasks:
                    self.task_success[key] = max(
                        self.task_success.get(key, 0.0), _clamp(t.end, now)
                    )
                    sources.add(task_source(*key))
            for a in changes.assets:
                if a.uri not in self._asset_uris:
                    continue  # no data product is made of it: nothing to keep
                self.asset_updates[a.uri] = max(
                    self.asset_updates.get(a.uri, 0.0), _clamp(a.timestamp, now)
                )
                if a.dag_id and a.task_id and a.dag_id in self.dags:
                    self.asset_sources.setdefault(a.uri, set()).add((a.dag_id, a.task_id))
                sources.add(asset_source(a.uri))
            for r in changes.terminal_runs:
                self._touch(r.dag_id)
                if r.end is None:
                    continue
                target = self.last_success if r.state == "success" else self.last_failure
                target[r.dag_id] = max(target.get(r.dag_id, 0.0), _clamp(r.end, now))
                if r.state == "success":
                    sources.add(dag_source(r.dag_id))
            self._products_changed(sources)
            for r, _tries in changes.finished_runs:
                self.running.pop((r.dag_id, r.run_id), None)
                self._finished_tasks.pop((r.dag_id, r.run_id), None)
            self._refresh_learned({r.dag_id for r, _tries in changes.finished_runs})

    def new_baselines(self) -> tuple[Baselines, int]:
        """Empty baselines to learn the state DB's history into, off the writer, and their
        generation. Until `install_baselines` takes them, the facts the writer feeds are also
        kept to be fed into them then (nothing observed meanwhile is missed). Lock held."""
        with self.lock:
            self._relearning = []
            self._generation += 1
            fresh = Baselines()
            fresh.configure(_update_sources(self.catalog))
            return fresh, self._generation

    def install_baselines(self, fresh: Baselines, generation: int) -> bool:
        """The baselines learned from history replace the live ones (writer thread), unless a
        later `new_baselines` superseded them."""
        with self.lock:
            if generation != self._generation or self._relearning is None:
                return False
            for runs, assets, waits in self._relearning:
                feed(fresh, runs, assets, waits, self.dags)
            self._relearning = None
            fresh.take_changes()
            self.baselines = fresh
            self._refresh_learned(self._oldest)
            self._products_changed(None)
            self._all_starts_stale = True
            return True

    def drop_relearning(self, generation: int) -> None:
        """A history read that failed: stop keeping facts for it."""
        with self.lock:
            if generation == self._generation:
                self._relearning = None

    def learn(
        self,
        runs: Iterable[tuple[DagRun, list[TaskTry]]],
        assets: Iterable[AssetUpdate] = (),
        waits: Iterable[TaskTry] | None = None,
    ) -> None:
        """Facts into the learned baselines: finished runs with their tries, asset updates,
        and tries that left the queue (`waits`; None: those of the runs' tries, on restore).
        Writer thread, lock held."""
        if self._relearning is not None:  # kept for the baselines being read (copied once)
            runs, assets = list(runs), list(assets)
            waits = None if waits is None else list(waits)
            self._relearning.append((runs, assets, waits))
        b = self.baselines
        learned = feed(b, runs, assets, waits, self.dags) & self._oldest.keys()
        self._refresh_learned(learned)
        started, updated = b.take_changes()
        self._products_changed(updated)
        if not self._all_starts_stale:
            self._starts_changed |= started  # their usual start: set again in `predict`

    def _refresh_learned(self, also: Iterable[str] = ()) -> None:
        """The learned duration limit of each DAG whose oldest run in flight changed, and of
        the DAGs `also` (their baselines or catalog entries changed); a changed one marks its
        DAG for the exposition to render again. O(runs in flight + changed DAGs). Lock held."""
        oldest: dict[str, float] = {}
        for (dag_id, _run), started in self.running.items():
            if started < oldest.get(dag_id, math.inf):
                oldest[dag_id] = started
        changed = set(also)
        changed.update(
            d for d in oldest.keys() | self._oldest.keys() if oldest.get(d) != self._oldest.get(d)
        )
        self._oldest = oldest
        for dag_id in changed:
            found = self._learned_duration(dag_id, oldest.get(dag_id))
            if found != self.learned_durations.get(dag_id):
                if found is None:
                    del self.learned_durations[dag_id]
                else:
                    self.learned_durations[dag_id] = found
                self._touch(dag_id)

    def _learned_duration(self, dag_id: str, start: float | None) -> LearnedDuration | None:
        pipeline = self.catalog.pipelines.get(dag_id)
        if start is None or (pipeline is not None and pipeline.max_duration):
            return None
        durations = self.baselines.runs.get(dag_id)
        usual = durations.usual(start) if durations is not None else None
        limit = learned_max_duration(usual)
        if usual is None or limit is None:
            return None
        return LearnedDuration(start, limit, usual)

    # --- thresholds: the catalog's, else learned ---------------------------------------------
    def freshness_limit(self, ds: Dataset, last: float | None) -> tuple[float, str] | None:
        """(max age, source) of a data product: the catalog's, else the learned one (after
        the last update at `last`); None while there is neither."""
        if ds.freshness:
            return ds.freshness, CATALOG
        if last is None:
            return None
        cadence = self.baselines.updates.get(_source_of(ds))
        found = learned_freshness(cadence, last) if cadence is not None else None
        return None if found is None else (found.limit, LEARNED)

    def usual_update_by(self, ds: Dataset, last: float | None) -> float | None:
        """When the update after `last` usually comes by (learned), for "usually updated by"."""
        cadence = self.baselines.updates.get(_source_of(ds))
        if last is None or cadence is None:
            return None
        found = learned_freshness(cadence, last)
        return None if found is None else found.by

    def baseline_updates(self, ds: Dataset) -> int | None:
        """How many updates the data product's learned cadence holds (None: none seen)."""
        cadence = self.baselines.updates.get(_source_of(ds))
        return None if cadence is None else len(cadence)

    def max_duration(self, dag_id: str, start: float) -> tuple[float, str] | None:
        """(duration limit, source) for a run of `dag_id` started at `start`: the catalog's,
        else the learned one; None while there is neither."""
        pipeline = self.catalog.pipelines.get(dag_id)
        if pipeline is not None and pipeline.max_duration:
            return pipeline.max_duration, CATALOG
        durations = self.baselines.runs.get(dag_id)
        if durations is None:
            return None
        limit = learned_max_duration(durations.usual(start))
        return None if limit is None else (limit, LEARNED)

    # --- predicted misses ---------------------------------------------------------------------
    def predict(self, now: float) -> None:
        """The pace of each DAG's oldest run in flight, and of each DAG making a data product
        that has not started when it usually would have; from them the expected next update of
        each data product they make (collector/baselines/predict.py). Writer, each poll cycle,
        lock held: O(runs in flight + DAGs past their usual start + DAGs that started since)."""
        b = self.baselines
        oldest: dict[str, tuple[float, str]] = {}
        for (dag_id, run_id), started in self.running.items():
            if (started, run_id) < oldest.get(dag_id, (math.inf, "")):
                oldest[dag_id] = (started, run_id)
        paces: dict[str, Pace] = {}
        for dag_id, (started, run_id) in oldest.items():
            ends = b.usual_ends(dag_id)
            durations = b.runs.get(dag_id)
            usual = durations.usual(started) if durations is not None else None
            total = usual.median if usual is not None else 0.0
            done = self._finished_tasks.get((dag_id, run_id), {})
            if (found := pace(started, now, done, ends, total)) is not None:
                paces[dag_id] = found
        for dag_id in sorted(self._late_to_start(now)):
            if dag_id in oldest or dag_id in paces or self.dag_paused(dag_id):
                continue
            if (by := b.usual_start(dag_id)) is None or by >= now:
                continue
            durations = b.runs.get(dag_id)
            usual = durations.usual(now) if durations is not None else None
            total = usual.median if usual is not None else 0.0
            if (found := pace_unstarted(by, now, b.usual_ends(dag_id), total)) is not None:
                paces[dag_id] = found
        self.paces = paces
        expected: dict[str, ExpectedUpdate] = {}
        for dag_id, found in paces.items():
            for name, task_id in self._made_by.get(dag_id, ()):
                when = found.task_ends.get(task_id) if task_id else found.expected_end
                if when is None:
                    continue  # that task already finished in this run: the product is updated
                ds = self.catalog.datasets[name]
                last = self.dataset_last_updated(ds)
                limit = self.freshness_limit(ds, last)
                if last is None or limit is None or self.producer_paused(ds):
                    continue
                got = ExpectedUpdate(when, last + limit[0], dag_id, found.at, found.behind)
                if name not in expected or got.expected < expected[name].expected:
                    expected[name] = got
        self.expected_updates = expected

    def _late_to_start(self, now: float) -> Collection[str]:
        """DAGs making a data product whose usual start has passed (as learned from their
        starts: set again for the DAGs whose starts changed since the last cycle)."""
        b = self.baselines
        changed = self._starts_changed
        self._starts_changed = set()
        if self._all_starts_stale:
            self._all_starts_stale = False
            self._late_starts.clear()
            changed = set(self._made_by)
        for dag_id in changed:
            by = b.usual_start(dag_id) if dag_id in self._made_by else None
            self._late_starts.set(dag_id, by)
        return list(self._late_starts.due(now))

    def _overdue_products(self, now: float) -> list[str]:
        """Data products whose last update plus limit (the catalog's, else learned) has
        passed: the only ones a breach check needs to look at."""
        stale = self._stale_products
        self._stale_products = set()
        if stale is None:
            self._product_due.clear()
            stale = set(self.catalog.datasets)
        for name in stale:
            ds = self.catalog.datasets.get(name)
            last = self.dataset_last_updated(ds) if ds is not None else None
            found = self.freshness_limit(ds, last) if ds is not None else None
            due = None if last is None or found is None else last + found[0]
            self._product_due.set(name, due)
        return sorted(self._product_due.due(now))

    def _pool_label(self, dag_id: str, pool: str, seen: dict[str, set[str]]) -> str:
        """`pool`, or OTHER once the DAG has POOLS_PER_DAG pool labels (`seen`: the labels of
        its series, held and staged, filled on first use)."""
        if pool in self.pools:
            return pool
        labels = seen.get(dag_id)
        if labels is None:
            labels = seen[dag_id] = {
                k[2] for k in self.queued.by_dag.get(dag_id, ()) if k[2] not in self.pools
            }
        if pool in labels or len(labels) < POOLS_PER_DAG:
            labels.add(pool)
            return pool
        return OTHER

    def _observed_dags(self) -> set[str]:
        """DAGs with series made of what was observed (not of the catalog or Airflow's list)."""
        keys = set(self.last_success) | set(self.last_failure) | set(self.xcom)
        keys |= set(self.costs.dags)
        for hist in (self.duration, self.delay, self.queued, self.cost):
            keys |= set(hist.by_dag)
        return keys

    def set_running(self, running: Mapping[tuple[str, str], float]) -> None:
        """Runs queued or running now, with when they started (or were queued)."""
        with self.lock:
            self.running = dict(running)
            self._refresh_learned()
            for key in self._finished_tasks.keys() - self.running.keys():
                del self._finished_tasks[key]

    def set_platform(
        self,
        *,
        pools: Mapping[str, Mapping[str, int]] | None = None,
        import_errors: int | None = None,
        heartbeat: float | None = None,
        missed_deadlines: Mapping[str, list[tuple[str, float]]] | None = None,
    ) -> None:
        with self.lock:
            if pools is not None:
                self.pools = {p: dict(s) for p, s in pools.items()}
            if import_errors is not None:
                self.import_errors = import_errors
            if heartbeat is not None:
                self.heartbeat = heartbeat
            if missed_deadlines is not None:
                self.missed_airflow_deadlines = dict(missed_deadlines)

    def record_xcom(self, sizes: Iterable[tuple[str, float, int]], now: float) -> None:
        """(dag_id, written at, largest value in bytes) of finished runs."""
        with self.lock:
            for dag_id, at, size in sizes:
                self.xcom.setdefault(dag_id, deque()).append((at, size))
                self._touch(dag_id)
            for dag_id in list(self.xcom):
                window = self.xcom[dag_id]
                while window and window[0][0] < now - XCOM_WINDOW:
                    window.popleft()
                    self._touch(dag_id)

    # --- derived ----------------------------------------------------------------------------
    def dataset_last_updated(self, ds: Dataset) -> float | None:
        p = ds.produced_by
        if p is None:
            return None
        if p.asset_uri is not None:
            return self.asset_updates.get(p.asset_uri)
        if p.dag_id is None:
            return None
        if p.task_id is not None:
            return self.task_success.get((p.dag_id, p.task_id))
        return self.last_success.get(p.dag_id)

    def producer_dags(self, ds: Dataset) -> list[str]:
        """The DAGs that refresh a data product: the one named, or the Asset's writers."""
        p = ds.produced_by
        if p is None:
            return []
        if p.asset_uri is not None:
            return sorted({dag for dag, _task in self.asset_producers.get(p.asset_uri, ())})
        return [p.dag_id] if p.dag_id else []

    def producers(self, ds: Dataset) -> list[tuple[str, str]]:
        """(dag_id, task_id) of what refreshes a data product (task_id "" for a whole DAG):
        the catalog's `produced_by`, or for an Asset its declared writers and the sources of
        its events that Airflow still knows."""
        p = ds.produced_by
        if p is None:
            return []
        if p.asset_uri is not None:
            found = self.asset_producers.get(p.asset_uri, set())
            found = found | self.asset_sources.get(p.asset_uri, set())
            return sorted(w for w in found if w[0] in self.dags or not self.dags)
        return [(p.dag_id, p.task_id or "")] if p.dag_id else []

    def producer_dag(self, ds: Dataset) -> str:
        dags = self.producer_dags(ds)
        return dags[0] if dags else ""

    def dag_paused(self, dag_id: str) -> bool:
        return dag_id in self._paused

    def producer_paused(self, ds: Dataset) -> bool:
        """Paused when every DAG that refreshes it is paused (an Asset may have several)."""
        if not self._paused:
            return False  # the common case, and a fast one at 10,000 data products
        dags = self.producer_dags(ds)
        return bool(dags) and all(d in self._paused for d in dags)

    def deadline(self, dag_id: str, now: float) -> float | None:
        """Next unmet deadline: from the catalog, or an Airflow Deadline Alert missed earlier."""
        pipeline = self.catalog.pipelines.get(dag_id)
        found: float | None = None
        if pipeline is not None and pipeline.deadline is not None:
            d = pipeline.deadline
            found = next_unmet_deadline(
                d.hour, d.minute, ZoneInfo(d.tz), self.last_success.get(dag_id), now
            )
        for _id, at in self.missed_airflow_deadlines.get(dag_id, ()):
            found = at if found is None else min(found, at)
        return found

    # --- breaches ---------------------------------------------------------------------------
    def _count(
        self, staged: Staged, base: str, severities: Iterable[str], labels: tuple[str, ...]
    ) -> None:
        team, kind, dag_id, dataset = labels
        for severity in severities:
            staged.count(f"{base}|{severity}", (team, severity, kind, dag_id, dataset))

    def add_breach(self, key: str, labels: tuple[str, ...]) -> None:
        """A breach counted (staged and committed, or restored)."""
        self.add_breaches(labels, 1)
        self.counted.add(key)

    def add_breaches(self, labels: tuple[str, ...], n: int) -> None:
        if labels not in self.breaches:
            self._breaches_by_dag.setdefault(labels[3], []).append(labels)
        self.breaches[labels] += n
        self._touch(labels[3])

    @staticmethod
    def _ladder(ratio: float, critical_tier: bool) -> tuple[str, ...]:
        if critical_tier:
            return ("critical",)
        return ("warning", "critical") if ratio > 2 else ("warning",)

    def _check_duration(
        self, staged: Staged, dag_id: str, run_id: str, start: float, took: float
    ) -> None:
        found = self.max_duration(dag_id, start)
        if found is None or took <= found[0]:
            return
        pipeline = self.catalog.pipelines.get(dag_id)
        critical = pipeline is not None and pipeline.tier == "critical"
        ladder = self._ladder(took / found[0], critical)
        labels = (self.team(dag_id), "duration", dag_id, "")
        self._count(staged, f"duration|{dag_id}|{run_id}", ladder, labels)

    def evaluate(self, now: float) -> dict[str, float]:
        """Count breaches visible at `now`; returns the newly counted keys (and when)."""
        staged = self.stage_breaches(now)
        staged.commit()
        return {k: b.at for k, b in staged.breaches.items()}

    def stage_breaches(self, now: float) -> Staged:
        """The breaches visible at `now` not counted yet, staged: the writer saves them, then
        commits them here."""
        staged = Staged(self, now)
        with self.lock:
            self.predict(now)
            for name in self._overdue_products(now):
                ds = self.catalog.datasets[name]
                last = self.dataset_last_updated(ds)
                if last is None or self.producer_paused(ds):
                    continue
                found = self.freshness_limit(ds, last)
                if found is None:
                    continue
                age = now - last
                if age > found[0]:
                    ladder = self._ladder(age / found[0], ds.tier == "critical")
                    labels = (
                        self.catalog.team_of_dataset(name),
                        "freshness",
                        self.producer_dag(ds),
                        name,
                    )
                    self._count(staged, f"freshness|{name}|{last:.3f}", ladder, labels)
            for (dag_id, run_id), started in self.running.items():
                self._check_duration(staged, dag_id, run_id, started, now - started)
            for dag_id, pipeline in self.catalog.pipelines.items():
                if self.dag_paused(dag_id):
                    continue
                due = self.deadline(dag_id, now)
                if due is not None and due <= now:
                    severity = ("critical",) if pipeline.tier == "critical" else ("warning",)
                    labels = (self.team(dag_id), "deadline", dag_id, "")
                    self._count(staged, f"deadline|{dag_id}|{due:.0f}", severity, labels)
            for dag_id, missed in self.missed_airflow_deadlines.items():
                pipeline = self.catalog.pipelines.get(dag_id)
                critical = pipeline is not None and pipeline.tier == "critical"
                severity = ("critical",) if critical else ("warning",)
                for deadline_id, _at in missed:
                    labels = (self.team(dag_id), "deadline", dag_id, "")
                    self._count(staged, f"deadline|{dag_id}|af:{deadline_id}", severity, labels)
        return staged


def _source_of(ds: Dataset) -> str:
    """The learned baselines' key of what refreshes a data product."""
    p = ds.produced_by
    if p is None:
        return ""
    if p.asset_uri is not None:
        return asset_source(p.asset_uri)
    if p.task_id is not None:
        return task_source(p.dag_id or "", p.task_id)
    return dag_source(p.dag_id or "")


def _products_of(catalog: Catalog) -> dict[str, list[str]]:
    """Update source (learner.py key) -> the data products it refreshes."""
    found: dict[str, list[str]] = {}
    for name, ds in catalog.datasets.items():
        if ds.produced_by is not None:
            found.setdefault(_source_of(ds), []).append(name)
    return found


def _made_by(catalog: Catalog) -> dict[str, list[tuple[str, str]]]:
    """DAG -> (data product, task_id or "" for the whole run) it makes, by the catalog's
    `produced_by` (an Asset's writers are Airflow's, not the catalog's: not predicted yet)."""
    made: dict[str, list[tuple[str, str]]] = {}
    for name, ds in catalog.datasets.items():
        p = ds.produced_by
        if p is not None and p.asset_uri is None and p.dag_id:
            made.setdefault(p.dag_id, []).append((name, p.task_id or ""))
    return made


def _update_sources(catalog: Catalog) -> set[str]:
    """What refreshes the catalog's data products: the update cadences worth learning."""
    return {_source_of(ds) for ds in catalog.datasets.values() if ds.produced_by is not None}


def _producer_tasks(catalog: Catalog) -> frozenset[tuple[str, str]]:
    """(dag_id, task_id) of tasks whose success refreshes a data product: only those are kept."""
    return frozenset(
        (p.dag_id, p.task_id)
        for ds in catalog.datasets.values()
        if (p := ds.produced_by) is not None and p.dag_id and p.task_id
    )


def _asset_uris(catalog: Catalog) -> frozenset[str]:
    """Asset URIs whose updates refresh a data product: only their latest update is kept."""
    return frozenset(
        p.asset_uri
        for ds in catalog.datasets.values()
        if (p := ds.produced_by) is not None and p.asset_uri
    )


def _named_tasks(catalog: Catalog) -> dict[str, frozenset[str]]:
    """Task ids that keep their own cost series: named in `cost.tasks` or producing a data
    product, by DAG id."""
    named = {dag_id: set(tasks) for dag_id, tasks in catalog.cost.named_tasks().items()}
    for dag_id, task_id in _producer_tasks(catalog):
        named.setdefault(dag_id, set()).add(task_id)
    return {dag_id: frozenset(tasks) for dag_id, tasks in named.items()}


def _clamp(ts: float, now: float) -> float:
    """A clock-skewed future timestamp must not make data look fresh for longer."""
    return now if ts > now + FUTURE_TOLERANCE else ts
