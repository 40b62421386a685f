"""The router's self-metrics: counters kept in memory, families yielded at scrape time.

Counters start at zero in each process (Prometheus' `increase()` handles the reset). The outbox
depth and open incidents are read from the state DB at scrape time with two small indexed
queries, so every replica shows the same truth.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from impactwatch.contract import metrics as c

if TYPE_CHECKING:
    from impactwatch.router.store import RouterStore


class RouterStats:
    """Thread-safe in-memory counters of one router process."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.notifications: Counter[str] = Counter()
        self.alerts: Counter[str] = Counter()
        self.slack_calls: Counter[tuple[str, str]] = Counter()
        self.escalations: Counter[str] = Counter()
        self.interactions: Counter[tuple[str, str]] = Counter()
        self.not_actionable: Counter[tuple[str, str]] = Counter()
        self.digests: Counter[str] = Counter()
        self.values_adjusted: Counter[tuple[str, str]] = Counter()
        self.store_failures: Counter[tuple[str, str]] = Counter()
        self.slack_errors: Counter[tuple[str, str]] = Counter()
        self.messages_moved: Counter[tuple[str, str]] = Counter()
        self.delivery_held: Counter[str] = Counter()
        self.failure_lookups: Counter[str] = Counter()
        self.webhook_buckets = [0] * (len(c.WEBHOOK_BUCKETS) + 1)
        self.webhook_sum = 0.0

    def count(self, counter: str, key: object, n: int = 1) -> None:
        with self.lock:
            getattr(self, counter)[key] += n

    def add(self, counter: str, counts: Mapping[Any, int]) -> None:
        with self.lock:
            getattr(self, counter).update(counts)

    def store_failed(self, operation: str, exc: BaseException) -> str:
        """Count a failed state-DB write by its reason (`store_failure_reason`); returns it."""
        reason = store_failure_reason(exc)
        self.count("store_failures", (operation, reason))
        return reason

    def webhook_took(self, seconds: float) -> None:
        with self.lock:
            self.webhook_buckets[bisect_left(c.WEBHOOK_BUCKETS, seconds)] += 1
            self.webhook_sum += seconds


class RouterCollector(Collector):
    def __init__(
        self,
        stats: RouterStats,
        store: RouterStore | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.stats = stats
        self.store = store
        self.clock = clock

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        s = self.stats
        with s.lock:
            yield _counter(c.ROUTER_NOTIFICATIONS, {(k,): v for k, v in s.notifications.items()})
            yield _counter(c.ROUTER_ALERTS, {(k,): v for k, v in s.alerts.items()})
            yield _counter(c.ROUTER_SLACK_CALLS, dict(s.slack_calls))
            yield _counter(c.ROUTER_ESCALATIONS, {(k,): v for k, v in s.escalations.items()})
            yield _counter(c.ROUTER_INTERACTIONS, dict(s.interactions))
            yield _counter(c.ROUTER_NOT_ACTIONABLE, dict(s.not_actionable))
            yield _counter(c.ROUTER_DIGESTS, {(k,): v for k, v in s.digests.items()})
            yield _counter(c.ROUTER_VALUES_ADJUSTED, dict(s.values_adjusted))
            yield _counter(c.ROUTER_STORE_FAILURES, dict(s.store_failures))
            yield _counter(c.ROUTER_SLACK_ERRORS, dict(s.slack_errors))
            yield _counter(c.ROUTER_MESSAGES_MOVED, dict(s.messages_moved))
            yield _counter(c.ROUTER_DELIVERY_HELD, {(k,): v for k, v in s.delivery_held.items()})
            yield _counter(
                c.ROUTER_FAILURE_LOOKUPS, {(k,): v for k, v in s.failure_lookups.items()}
            )
            yield self._webhook()
        if self.store is None:
            return
        try:
            open_now = self.store.open_incidents()
            depth, oldest = self.store.outbox_depth(self.clock())
        except Exception:  # a scrape while the DB is away shows counters only
            return
        family = GaugeMetricFamily(
            c.ROUTER_OPEN_INCIDENTS.family,
            c.ROUTER_OPEN_INCIDENTS.help,
            labels=c.ROUTER_OPEN_INCIDENTS.labels,
        )
        for (team, severity), n in sorted(open_now.items()):
            family.add_metric([team, severity], n)
        yield family
        yield GaugeMetricFamily(c.ROUTER_OUTBOX_DEPTH.family, c.ROUTER_OUTBOX_DEPTH.help, depth)
        yield GaugeMetricFamily(c.ROUTER_OUTBOX_OLDEST.family, c.ROUTER_OUTBOX_OLDEST.help, oldest)

    def _webhook(self) -> Metric:
        spec = c.ROUTER_WEBHOOK_DURATION
        family = HistogramMetricFamily(spec.family, spec.help, labels=())
        running, buckets = 0, []
        for bound, n in zip(c.WEBHOOK_BUCKETS, self.stats.webhook_buckets, strict=False):
            running += n
            buckets.append((repr(float(bound)), running))
        total = running + self.stats.webhook_buckets[-1]
        buckets.append(("+Inf", total))
        family.add_metric([], buckets, self.stats.webhook_sum)
        return family


def store_failure_reason(exc: BaseException) -> str:
    """Why a state-DB write failed, in a word: unavailable (connection, timeout, lock),
    rejected (a value the DB refuses), conflict (a constraint), other."""
    from sqlalchemy import exc as sa

    if isinstance(exc, (sa.OperationalError, sa.InterfaceError, sa.TimeoutError)):
        return "unavailable"
    if isinstance(exc, (sa.DataError, UnicodeError, ValueError)):
        return "rejected"
    if isinstance(exc, sa.IntegrityError):
        return "conflict"
    return "other"


def _counter(spec: c.MetricSpec, values: dict[tuple[str, ...], int]) -> CounterMetricFamily:
    family = CounterMetricFamily(spec.family, spec.help, labels=spec.labels)
    for labels, value in sorted(values.items()):
        family.add_metric(list(labels), value)
    return family
