"""The advice made from the state DB (and Airflow's pool sizes), kept for `/metrics`. Thin I/O
around `advice.advise_all` (pure).

A failed attempt (state DB or Airflow API unavailable) is one log line and a count in
`impactwatch_pool_advice_errors_total{reason}`; the last good advice stays exported.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine

from impactwatch.catalog.model import Catalog
from impactwatch.contract import metrics as c
from impactwatch.pools.advice import AdviceSettings, PoolAdvice, advise_all
from impactwatch.pools.airflow_api import AirflowApi, AirflowApiError
from impactwatch.pools.history import read_pool_tries
from impactwatch.pools.usage import DAYS, WEEK, HourOfWeek

log = logging.getLogger(__name__)


class AdviceError(RuntimeError):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Advice:
    pools: list[PoolAdvice]
    since: float
    until: float


@dataclass
class AdviceState:
    lock: threading.Lock = field(default_factory=threading.Lock)
    advice: Advice | None = None
    last_success: float | None = None
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))


class AdviceJob:
    """Reads `weeks` of history up to now, the configured sizes, and advises."""

    def __init__(
        self,
        catalog: Catalog,
        engine: Engine,
        *,
        hours: HourOfWeek,
        settings: AdviceSettings,
        weeks: float = 4.0,
        api: AirflowApi | None = None,
        static: Mapping[str, int] | None = None,
        pools: frozenset[str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.catalog, self.engine, self.api = catalog, engine, api
        self.hours, self.settings, self.weeks = hours, settings, weeks
        self.static = dict(static or {})
        self.pools = pools
        self.clock = clock
        self.state = AdviceState()

    def compute(self) -> Advice:
        """One advice; raises AdviceError with its reason."""
        until = self.clock()
        since = until - self.weeks * WEEK
        configured: dict[str, int] = {}
        if self.api is not None:
            try:
                configured = {p.name: p.slots for p in self.api.pools() if p.slots >= 0}
            except AirflowApiError as exc:
                raise AdviceError("airflow_api", str(exc)) from None
        configured.update(self.static)
        try:
            tries = list(read_pool_tries(self.engine, since, until, self.pools))
        except Exception as exc:  # unreachable, missing tables: one line, never the URL
            text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
            first = text[0][:200] if text else ""
            raise AdviceError("state_db", f"state DB: {type(exc).__name__}: {first}") from None
        pools = advise_all(
            tries,
            self.catalog,
            configured=configured,
            since=since,
            until=until,
            hours=self.hours,
            settings=self.settings,
        )
        return Advice(pools, since, until)

    def run_once(self) -> Advice | None:
        """Compute and keep the advice; None after a failure (logged, counted)."""
        try:
            advice = self.compute()
        except AdviceError as exc:
            with self.state.lock:
                self.state.errors[exc.reason] += 1
            log.warning("pool advice failed (%s), keeping the last: %s", exc.reason, exc)
            return None
        with self.state.lock:
            self.state.advice = advice
            self.state.last_success = self.clock()
        return advice


class AdviceCollector(Collector):
    """The advice's families (`contract.POOL_ADVICE_METRICS`); the advised size is the current
    window's at scrape time."""

    def __init__(self, job: AdviceJob) -> None:
        self.job = job

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        state = self.job.state
        with state.lock:
            advice, last, errors = state.advice, state.last_success, dict(state.errors)

        def gauge(spec: c.MetricSpec) -> GaugeMetricFamily:
            return GaugeMetricFamily(spec.family, spec.help, labels=spec.labels)

        slots, saved = gauge(c.POOL_ADVISED_SLOTS), gauge(c.POOL_ADVICE_WAIT_SAVED)
        freed, cost = gauge(c.POOL_ADVICE_SLOT_HOURS_FREED), gauge(c.POOL_ADVICE_COST_DIFFERENCE)
        usage = gauge(c.POOL_USAGE_BY_HOUR)
        now = self.job.clock()
        for a in advice.pools if advice is not None else ():
            static, advised = a.static_effect, a.advised_effect
            slots.add_metric([a.pool], float(a.slots_at(now, self.job.hours)))
            saved.add_metric([a.pool], static.sla_wait - advised.sla_wait)
            freed.add_metric([a.pool], static.slot_hours - advised.slot_hours)
            cost.add_metric([a.pool], float(a.cost_difference))
            for how, (running, queued) in enumerate(zip(a.running, a.queued, strict=True)):
                day, hour = f"{how // 24 + 1} {DAYS[how // 24]}", f"{how % 24:02d}"
                usage.add_metric([a.pool, day, hour, "running"], running)
                usage.add_metric([a.pool, day, hour, "queued"], queued)
        yield from (slots, saved, freed, cost, usage)
        if last is not None:
            success = gauge(c.POOL_ADVICE_LAST_SUCCESS)
            success.add_metric([], last)
            yield success
        spec = c.POOL_ADVICE_ERRORS
        failed = CounterMetricFamily(spec.family, spec.help, labels=spec.labels)
        for reason in c.POOL_ADVICE_ERROR_REASONS:
            failed.add_metric([reason], float(errors.get(reason, 0)))
        yield failed
