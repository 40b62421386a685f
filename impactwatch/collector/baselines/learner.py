"""Every baseline the collector keeps, fed with facts as the store first sees them.

Bounded: one RunDurations and one Cadence of starts per DAG Airflow knows, one TaskTimes per
task seen succeeding in those DAGs, one PoolWaits per pool label, one Cadence per source of a
data product's updates that the catalog names (`configure`). `forget` drops gone DAGs.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from impactwatch.collector.baselines.cadence import Cadence
from impactwatch.collector.baselines.durations import PoolWaits, RunDurations, TaskTimes
from impactwatch.collector.events import SEP, AssetUpdate, DagRun, TaskTry

MAX_POOLS = 1024  # pool labels with a queue-wait baseline; Airflow's pools are far fewer


def dag_source(dag_id: str) -> str:
    """The update source "every successful run of `dag_id`"."""
    return SEP.join(("dag", dag_id))


def task_source(dag_id: str, task_id: str) -> str:
    return SEP.join(("task", dag_id, task_id))


def asset_source(uri: str) -> str:
    return SEP.join(("asset", uri))


class Baselines:
    def __init__(self) -> None:
        self.runs: dict[str, RunDurations] = {}
        self.starts: dict[str, Cadence] = {}
        self.tasks: dict[tuple[str, str], TaskTimes] = {}
        self.task_ids: dict[str, list[str]] = {}  # the tasks of each DAG in `tasks`
        self._start_by: dict[str, float | None] = {}  # usual_start, until the next start
        self._ends: dict[str, dict[str, float]] = {}  # usual_ends, until the DAG's next try
        self.pools: dict[str, PoolWaits] = {}
        self.updates: dict[str, Cadence] = {}
        self._sources: frozenset[str] = frozenset()
        # What changed since the metrics state last asked (`take_changes`): DAGs whose usual
        # start may have moved, update sources whose cadence did. Bounded by DAGs and sources.
        self._started: set[str] = set()
        self._updated: set[str] = set()

    def configure(self, sources: Collection[str]) -> None:
        """The update sources that refresh a data product (the catalog's): only those learn."""
        self._sources = frozenset(sources)
        for gone in set(self.updates) - self._sources:
            del self.updates[gone]

    def forget(self, dag_ids: Collection[str]) -> None:
        """DAGs Airflow no longer has."""
        gone = set(dag_ids)
        self._started |= gone
        for store in (self.runs, self.starts, self._start_by, self._ends):
            for dag_id in gone & store.keys():
                del store[dag_id]
        for key in [k for k in self.tasks if k[0] in gone]:
            del self.tasks[key]
        for dag_id in gone & self.task_ids.keys():
            del self.task_ids[dag_id]

    # --- facts ------------------------------------------------------------------------------
    def observe_run(self, run: DagRun, tries: Iterable[TaskTry]) -> None:
        """A finished run and its tries: its start, and if it succeeded, its durations."""
        if run.start is None:
            return
        self.starts.setdefault(run.dag_id, Cadence()).add(run.start)
        self._start_by.pop(run.dag_id, None)
        self._started.add(run.dag_id)
        if run.state != "success" or run.end is None or run.end < run.start:
            return
        self.runs.setdefault(run.dag_id, RunDurations()).add(run.start, run.end - run.start)
        for t in tries:
            self.observe_task(run.start, t)

    def observe_task(self, run_start: float, t: TaskTry) -> None:
        if t.state != "success" or t.start is None or t.end is None or t.end < t.start:
            return
        self._ends.pop(t.dag_id, None)
        times = self.tasks.get((t.dag_id, t.task_id))
        if times is None:
            times = self.tasks[(t.dag_id, t.task_id)] = TaskTimes()
            self.task_ids.setdefault(t.dag_id, []).append(t.task_id)
        times.add(t.end - t.start, max(t.start - run_start, 0.0), max(t.end - run_start, 0.0))

    def observe_wait(self, t: TaskTry) -> None:
        """A try that left the queue: how long it waited in its pool."""
        if t.start is None or t.queued is None:
            return
        pool = t.pool or "default_pool"
        waits = self.pools.get(pool)
        if waits is None:
            if len(self.pools) >= MAX_POOLS:
                return
            waits = self.pools[pool] = PoolWaits()
        waits.add(max(t.start - t.queued, 0.0))

    def observe_update(self, source: str, ts: float) -> None:
        if source in self._sources:
            self.updates.setdefault(source, Cadence()).add(ts)
            self._updated.add(source)

    def observe_success(self, t: TaskTry) -> None:
        if t.end is not None:
            self.observe_update(task_source(t.dag_id, t.task_id), t.end)

    def observe_asset(self, a: AssetUpdate) -> None:
        self.observe_update(asset_source(a.uri), a.timestamp)

    def observe_terminal(self, r: DagRun) -> None:
        if r.state == "success" and r.end is not None:
            self.observe_update(dag_source(r.dag_id), r.end)

    def take_changes(self) -> tuple[set[str], set[str]]:
        """(DAGs whose usual start may have moved, update sources whose cadence changed)
        since the last call."""
        changes = (self._started, self._updated)
        self._started, self._updated = set(), set()
        return changes

    # --- what is usual ----------------------------------------------------------------------
    def usual_ends(self, dag_id: str) -> dict[str, float]:
        """When each task of `dag_id` with enough history usually ends, after its run starts
        (kept until the DAG's next successful try: asked for each run in flight each cycle)."""
        found = self._ends.get(dag_id)
        if found is not None:
            return found
        ends: dict[str, float] = {}
        for task_id in self.task_ids.get(dag_id, ()):
            end = self.tasks[(dag_id, task_id)].usual_end()
            if end is not None:
                ends[task_id] = end
        if dag_id in self.task_ids:
            self._ends[dag_id] = ends
        return ends

    def usual_start(self, dag_id: str) -> float | None:
        """When the run after the DAG's latest start usually starts by (None: not learned);
        kept until the DAG's next start (asked for every DAG in every poll cycle)."""
        if dag_id in self._start_by:
            return self._start_by[dag_id]
        starts = self.starts.get(dag_id)
        found = starts.expected(starts.latest()) if starts is not None and len(starts) else None
        by = self._start_by[dag_id] = None if found is None else found.by
        return by


def feed(
    b: Baselines,
    runs: Iterable[tuple[DagRun, list[TaskTry]]],
    assets: Iterable[AssetUpdate] = (),
    waits: Iterable[TaskTry] | None = None,
    dags: Collection[str] = (),
) -> set[str]:
    """Facts into `b`: finished runs with their tries, asset updates, and tries that left the
    queue (`waits`; None: those of the runs' tries, as when history is read). Runs of DAGs
    outside `dags` (when given) are left out. Returns the DAG ids of the runs observed."""
    seen: set[str] = set()
    for r, tries in runs:
        if dags and r.dag_id not in dags:
            continue  # (history of a DAG Airflow no longer has)
        b.observe_run(r, tries)
        seen.add(r.dag_id)
        b.observe_terminal(r)
        for t in tries:
            if t.state == "success":
                b.observe_success(t)
            if waits is None:
                b.observe_wait(t)
    for t in waits or ():
        b.observe_wait(t)
    for a in assets:
        b.observe_asset(a)
    return seen
