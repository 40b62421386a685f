"""`impactwatch cost reconcile`: ask AWS Cost Explorer, price the same days from the state DB,
and keep the comparison for `/metrics`. Thin I/O around `cost_reconcile` (pure).

A failed attempt (throttled, access denied, Cost Explorer or the state DB unavailable) is one
log line and a count in `impactwatch_cost_reconcile_errors_total{reason}`; the figures of the
last good reconciliation stay exported and the next attempt comes at the next interval.
Credentials are boto3's (environment, profile, instance role) and never appear in a log line.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine

from impactwatch.catalog.model import Catalog
from impactwatch.collector.cost.aws import aws_error_reason, describe_aws_error, scrub
from impactwatch.collector.cost.history import cost_by_dag_and_day
from impactwatch.collector.cost.pricing import Pricing
from impactwatch.collector.cost.reconcile import (
    DEFAULT_METRIC,
    DEFAULT_TAG_KEY,
    CostExplorerAnswerError,
    Reconciliation,
    parse_pages,
    reconcile,
    window,
)
from impactwatch.contract import metrics as c

log = logging.getLogger(__name__)

MAX_PAGES = 200
ClientFactory = Callable[[], Any]


class ReconcileError(RuntimeError):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def default_ce_client() -> Any:
    """A Cost Explorer client (the service lives in us-east-1) with a few standard retries."""
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=5, read_timeout=30, retries={"max_attempts": 3, "mode": "standard"}
    )
    return boto3.client("ce", region_name="us-east-1", config=config)


def fetch_cost_pages(
    client: Any, days: list[date], tag_key: str, metric: str
) -> list[dict[str, Any]]:
    """Every page of `get_cost_and_usage` for `days`, daily, grouped by the tag."""
    from botocore.exceptions import BotoCoreError, ClientError

    params: dict[str, Any] = {
        "TimePeriod": {
            "Start": days[0].isoformat(),
            "End": (days[-1] + timedelta(days=1)).isoformat(),
        },
        "Granularity": "DAILY",
        "Metrics": [metric],
        "GroupBy": [{"Type": "TAG", "Key": tag_key}],
    }
    pages: list[dict[str, Any]] = []
    token: str | None = None
    try:
        for _ in range(MAX_PAGES):
            page = client.get_cost_and_usage(
                **params, **({"NextPageToken": token} if token else {})
            )
            pages.append(page)
            token = page.get("NextPageToken")
            if not token:
                return pages
    except (BotoCoreError, ClientError) as exc:
        raise ReconcileError(aws_error_reason(exc), describe_aws_error(exc)) from None
    raise ReconcileError("invalid", f"Cost Explorer kept paging past {MAX_PAGES} pages")


@dataclass
class ReconcileState:
    """What `/metrics` shows: the last good reconciliation, when, and the failures."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    result: Reconciliation | None = None
    last_success: float | None = None
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))


class ReconcileJob:
    def __init__(
        self,
        catalog: Catalog,
        engine: Engine,
        *,
        ce_client: ClientFactory = default_ce_client,
        tag_key: str = DEFAULT_TAG_KEY,
        metric: str = DEFAULT_METRIC,
        days: int = 1,
        lag_days: int = 1,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.catalog = catalog
        self.pricing = Pricing(catalog)
        self.engine = engine
        self.ce_client = ce_client
        self.tag_key, self.metric = tag_key, metric
        self.days, self.lag_days = days, lag_days
        self.clock = clock
        self.state = ReconcileState()
        self._client: Any = None

    def run_once(self) -> Reconciliation | None:
        """One reconciliation; None after a failure (logged in one line, counted)."""
        today = datetime.fromtimestamp(self.clock(), UTC).date()
        days = window(today, self.days, self.lag_days)
        try:
            if self._client is None:
                self._client = self.ce_client()
            pages = fetch_cost_pages(self._client, days, self.tag_key, self.metric)
            actual = parse_pages(pages, self.tag_key, self.metric)
        except ReconcileError as exc:
            return self._failed(exc.reason, f"AWS Cost Explorer: {exc}")
        except CostExplorerAnswerError as exc:
            return self._failed("invalid", f"AWS Cost Explorer answered oddly: {exc}")
        except Exception as exc:  # boto3 set-up (bad region, profile): still one line
            return self._failed(
                aws_error_reason(exc), f"AWS Cost Explorer: {describe_aws_error(exc)}"
            )
        try:
            estimates = cost_by_dag_and_day(self.engine, self.pricing, days)
        except Exception as exc:
            text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
            return self._failed(
                "state_db", f"state DB: {type(exc).__name__}: {text[0][:200] if text else ''}"
            )
        if actual.currency and actual.currency != self.catalog.cost.currency:
            log.warning(
                "cost reconcile: Cost Explorer answers in %s, the catalog's currency is %s: "
                "ratios compare different currencies",
                actual.currency,
                self.catalog.cost.currency,
            )
        result = reconcile(actual, estimates, days, self.catalog.pipelines)
        with self.state.lock:
            self.state.result = result
            self.state.last_success = self.clock()
        return result

    def _failed(self, reason: str, message: str) -> None:
        with self.state.lock:
            self.state.errors[reason] += 1
        log.warning(
            "cost reconcile failed (%s), keeping the last figures: %s", reason, scrub(message)
        )
        return None


class ReconcileCollector(Collector):
    """The reconciliation's families (`contract.COST_RECONCILE_METRICS`) from its state."""

    def __init__(self, job: ReconcileJob) -> None:
        self.job = job

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        state, catalog = self.job.state, self.job.catalog
        with state.lock:
            result, last, errors = state.result, state.last_success, dict(state.errors)

        def gauge(spec: c.MetricSpec) -> GaugeMetricFamily:
            return GaugeMetricFamily(spec.family, spec.help, labels=spec.labels)

        actual, estimated = gauge(c.COST_ACTUAL_DAILY), gauge(c.COST_ESTIMATED_DAILY)
        ratio, unattributed = gauge(c.COST_MODEL_RATIO), gauge(c.COST_UNATTRIBUTED_DAILY)
        day = gauge(c.COST_RECONCILE_DAY)
        if result is not None:
            for row in result.rows:
                labels = [row.dag_id, catalog.team_of_pipeline(row.dag_id)]
                actual.add_metric(labels, float(row.actual))
                estimated.add_metric(labels, float(row.estimated))
                if row.ratio is not None:
                    ratio.add_metric(labels, float(row.ratio))
            unattributed.add_metric([], float(result.unattributed))
            midnight = datetime.combine(result.days[-1], datetime.min.time(), UTC)
            day.add_metric([], midnight.timestamp())
        yield from (actual, estimated, ratio, unattributed, day)
        if last is not None:
            success = gauge(c.COST_RECONCILE_LAST_SUCCESS)
            success.add_metric([], last)
            yield success
        spec = c.COST_RECONCILE_ERRORS
        failed = CounterMetricFamily(spec.family, spec.help, labels=spec.labels)
        for reason in c.RECONCILE_ERROR_REASONS:
            failed.add_metric([reason], float(errors.get(reason, 0)))
        yield failed
