"""The Prometheus collector: metric families from `MetricsState` at scrape time (never the DB)."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from impactwatch.collector.metrics.state import CATALOG, LEARNED, Histogram, MetricsState
from impactwatch.contract import metrics as c
from impactwatch.contract.metrics import MetricSpec


def _gauge(spec: MetricSpec) -> GaugeMetricFamily:
    return GaugeMetricFamily(spec.family, spec.help, labels=spec.labels)


def _counter(spec: MetricSpec) -> CounterMetricFamily:
    return CounterMetricFamily(spec.family, spec.help, labels=spec.labels)


def _histogram(
    spec: MetricSpec, hist: Histogram, dags: Collection[str] | None = None
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(spec.family, spec.help, labels=spec.labels)
    bounds = [*(repr(float(b)) for b in hist.buckets), "+Inf"]
    for labels, row in hist.items(dags):
        running, buckets = 0.0, []
        for bound, n in zip(bounds[:-1], row[:-2], strict=True):
            running += n
            buckets.append((bound, running))
        buckets.append(("+Inf", row[-1]))
        family.add_metric(list(labels), buckets, row[-2])
    return family


class ImpactwatchCollector(Collector):
    """Yields the families of the metric contract from the state it is given.

    `part="all"` yields everything; the cached exposition renders `part="dags"` (the families
    keyed by DAG, for the DAGs given, which change only when those DAGs do) and
    `part="products"` (each data product's own series, for the products given, which change
    only when its updates, its producers or the catalog do) separately from `part="rest"`
    (predictions, ages and deadlines computed from now, platform, self-metrics).
    """

    def __init__(
        self,
        state: MetricsState,
        clock: Callable[[], float] = time.time,
        *,
        part: str = "all",
        dags: Collection[str] | None = None,
        datasets: Collection[str] | None = None,
    ) -> None:
        self.state = state
        self.clock = clock
        self.part = part
        self.dags = dags
        self.datasets = datasets

    def describe(self) -> Iterator[Metric]:
        return iter(())  # families depend on the catalog; no eager collect at registration

    def collect(self) -> Iterator[Metric]:
        now = self.clock()
        with self.state.lock:
            if self.part in ("all", "products"):
                names = self.state.catalog.datasets if self.datasets is None else self.datasets
                yield from self._datasets(names)
            if self.part in ("all", "rest"):
                yield from self._predicted()
                yield from self._dag_dynamic(now)
            if self.part in ("all", "dags"):
                dags = sorted(self.state.dag_keys()) if self.dags is None else self.dags
                yield from self._dag_static(dags)
            if self.part in ("all", "rest"):
                yield from self._platform()
                yield from self._self_metrics()

    def _datasets(self, names: Collection[str]) -> Iterator[Metric]:
        """Each data product's own series (not the clock's: ages are PromQL's `time() - ...`)."""
        s = self.state
        updated, sla, paused, producer = (
            _gauge(c.DATASET_LAST_UPDATED),
            _gauge(c.DATASET_FRESHNESS_SLA),
            _gauge(c.DATASET_PRODUCER_PAUSED),
            _gauge(c.DATASET_PRODUCER),
        )
        usual_by, history = _gauge(c.DATASET_USUAL_UPDATE_BY), _gauge(c.DATASET_BASELINE_UPDATES)
        for name in names:
            ds = s.catalog.datasets[name]
            labels = [name, s.catalog.team_of_dataset(name), ds.tier]
            last = s.dataset_last_updated(ds)
            if last is not None:
                updated.add_metric(labels, last)
            if (limit := s.freshness_limit(ds, last)) is not None:
                sla.add_metric([*labels, limit[1]], limit[0])
            paused.add_metric(labels, 1.0 if s.producer_paused(ds) else 0.0)
            for dag_id, task_id in s.producers(ds):
                producer.add_metric([name, dag_id, task_id], 1.0)
            if (by := s.usual_update_by(ds, last)) is not None:
                usual_by.add_metric(labels, by)
            if (n := s.baseline_updates(ds)) is not None:
                history.add_metric(labels, float(n))
        yield from (updated, sla, paused, producer, usual_by, history)

    def _predicted(self) -> Iterator[Metric]:
        """The expected next update of data products that a run's pace says (each cycle)."""
        s = self.state
        expected, due = _gauge(c.DATASET_EXPECTED_UPDATE), _gauge(c.DATASET_UPDATE_DUE)
        for name, got in sorted(s.expected_updates.items()):
            labels = [name, s.catalog.team_of_dataset(name), s.catalog.datasets[name].tier]
            expected.add_metric([*labels, got.dag_id, got.at], got.expected)
            due.add_metric(labels, got.due)
        yield from (expected, due)

    def _dag_dynamic(self, now: float) -> Iterator[Metric]:
        """DAG gauges that move with the clock: ages of runs in flight, next deadlines."""
        s = self.state
        oldest: dict[str, float] = {}
        for (dag_id, _run), started in s.running.items():
            oldest[dag_id] = min(oldest.get(dag_id, started), started)
        running = _gauge(c.DAG_RUN_OLDEST_RUNNING)
        for dag_id, started in oldest.items():
            running.add_metric([dag_id, s.team(dag_id)], max(now - started, 0.0))
        deadline = _gauge(c.DAG_RUN_DEADLINE)
        for dag_id, pipeline in s.catalog.pipelines.items():
            if pipeline.deadline is None and dag_id not in s.missed_airflow_deadlines:
                continue
            if s.dag_paused(dag_id):
                continue  # a paused pipeline is held to no deadline
            due = s.deadline(dag_id, now)
            if due is not None:
                deadline.add_metric([dag_id, s.team(dag_id)], due)
        behind, end = _gauge(c.DAG_RUN_BEHIND), _gauge(c.DAG_RUN_EXPECTED_END)
        for dag_id, pace in sorted(s.paces.items()):
            behind.add_metric([dag_id, s.team(dag_id), pace.at], pace.behind)
            end.add_metric([dag_id, s.team(dag_id)], pace.expected_end)
        yield from (running, deadline, behind, end)

    def _dag_static(self, dags: Collection[str]) -> Iterator[Metric]:
        """Families keyed by DAG that change only when something happens to that DAG."""
        s = self.state
        success, failure = _gauge(c.DAG_RUN_LAST_SUCCESS), _gauge(c.DAG_RUN_LAST_FAILURE)
        paused, xcom = _gauge(c.DAG_PAUSED), _gauge(c.XCOM_LARGEST)
        for dag_id in dags:
            if (ts := s.last_success.get(dag_id)) is not None:
                success.add_metric([dag_id, s.team(dag_id)], ts)
        for dag_id in dags:
            if (ts := s.last_failure.get(dag_id)) is not None:
                failure.add_metric([dag_id, s.team(dag_id)], ts)
        limit, usual = _gauge(c.DAG_RUN_MAX_DURATION), _gauge(c.DAG_RUN_USUAL_DURATION)
        for dag_id in dags:
            pipeline = s.catalog.pipelines.get(dag_id)
            if pipeline is not None and pipeline.max_duration:
                limit.add_metric([dag_id, s.team(dag_id), CATALOG], pipeline.max_duration)
            elif (learned := s.learned_durations.get(dag_id)) is not None:
                limit.add_metric([dag_id, s.team(dag_id), LEARNED], learned.limit)
        for dag_id in dags:
            if (learned := s.learned_durations.get(dag_id)) is not None:
                usual.add_metric([dag_id, s.team(dag_id), "0.5"], learned.usual.median)
                usual.add_metric([dag_id, s.team(dag_id), "0.9"], learned.usual.p90)
        history = _gauge(c.DAG_BASELINE_RUNS)
        for dag_id in dags:
            if (durations := s.baselines.runs.get(dag_id)) is not None:
                history.add_metric([dag_id, s.team(dag_id)], float(len(durations)))
        for dag_id in dags:
            if (info := s.dags.get(dag_id)) is not None:
                paused.add_metric([dag_id, s.team(dag_id)], 1.0 if info.paused else 0.0)
        for dag_id in dags:
            if window := s.xcom.get(dag_id):
                xcom.add_metric([dag_id, s.team(dag_id)], float(max(size for _at, size in window)))
        breaches = _counter(c.SLA_BREACHES)
        for labels in s.breach_labels(dags):
            breaches.add_metric(list(labels), float(s.breaches[labels]))
        yield from (success, failure, limit, usual, history, paused, xcom, breaches)
        yield _histogram(c.DAG_RUN_DURATION, s.duration, dags)
        yield _histogram(c.DAG_RUN_SCHEDULE_DELAY, s.delay, dags)
        yield _histogram(c.TASK_QUEUED, s.queued, dags)
        yield _histogram(c.DAG_RUN_COST, s.cost, dags)
        yield from self._costs(dags)

    def _costs(self, dags: Collection[str]) -> Iterator[Metric]:
        """The latest run's cost beside the usual (median) one, and spend by task."""
        s = self.state
        last, usual = _gauge(c.DAG_RUN_LAST_COST), _gauge(c.DAG_RUN_MEDIAN_COST)
        tasks = _counter(c.TASK_COST)
        for dag_id in dags:
            if dag_id not in s.costs.dags:
                continue
            team = s.team(dag_id)
            if (amount := s.costs.last(dag_id)) is not None:
                last.add_metric([dag_id, team], float(amount))
            if (amount := s.costs.median_before_last(dag_id)) is not None:
                usual.add_metric([dag_id, team], float(amount))
            for task_id, spent in s.costs.task_series(dag_id):
                tasks.add_metric([dag_id, team, task_id], float(spent))
        yield from (last, usual, tasks)

    def _platform(self) -> Iterator[Metric]:
        s = self.state
        pools = _gauge(c.POOL_SLOTS)
        for pool, states in sorted(s.pools.items()):
            for state in c.POOL_STATES:
                pools.add_metric([pool, state], float(states.get(state, 0)))
        yield pools
        if s.import_errors is not None:
            errors = _gauge(c.DAG_IMPORT_ERRORS)
            errors.add_metric([], float(s.import_errors))
            yield errors
        if s.heartbeat is not None:
            beat = _gauge(c.SCHEDULER_HEARTBEAT)
            beat.add_metric([], s.heartbeat)
            yield beat

    def _self_metrics(self) -> Iterator[Metric]:
        stats = self.state.self_stats
        yield _histogram(c.COLLECTOR_POLL_DURATION, stats.poll_duration)
        rows = _counter(c.COLLECTOR_ROWS_READ)
        for table, n in sorted(stats.rows_read.items()):
            rows.add_metric([table], float(n))
        events = _counter(c.COLLECTOR_EVENTS)
        for (source, outcome), n in sorted(stats.event_counts().items()):
            events.add_metric([source, outcome], float(n))
        errors = _counter(c.COLLECTOR_DB_ERRORS)
        for db in ("airflow", "state"):
            errors.add_metric([db], float(stats.db_errors.get(db, 0)))
        stale = _gauge(c.COLLECTOR_STALE)
        stale.add_metric([], 1.0 if stats.stale else 0.0)
        yield from (rows, events, errors, stale)
        if stats.last_poll is not None:
            last = _gauge(c.COLLECTOR_LAST_POLL)
            last.add_metric([], stats.last_poll)
            yield last
