"""A pipeline's latest failure, asked of the collector when a message is rendered.

The router never reads Airflow's DB, and a run id cannot be a metric label, so the facts that
put the failure in words (failed tasks, tries, error type, run id for the log links) come from
the collector's read-only `GET /v1/failures?dag_id=` (collector/http_app.py). Asked by the
delivery threads only, never while a webhook is decided; each answer is kept `ttl` seconds
(a bounded cache), an unreachable or slow collector costs one `timeout` per `ttl` and the
message goes out with what the alert's labels say. Lookups are counted by outcome.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Annotated

import requests
from pydantic import BaseModel, ConfigDict, Field, ValidationError

log = logging.getLogger(__name__)

Id = Annotated[str, Field(min_length=1, max_length=250, pattern=r"^[^\x00-\x1f\x7f]*$")]
Epoch = Annotated[float, Field(ge=0, le=4102444800.0, allow_inf_nan=False)]


class FailedTask(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    task_id: Id
    map_index: int = Field(-1, ge=-1, le=2**31 - 1)
    tries: int = Field(1, ge=0, le=2**31 - 1)
    error_type: Id | None = None
    failed_at: Epoch | None = None


class FailureReport(BaseModel):
    """What the collector says of a DAG's latest failed run (bounded as it enters)."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    dag_id: Id
    run_id: Id
    run_start: Epoch | None = None
    run_end: Epoch | None = None
    failing_since: Epoch | None = None
    failed_runs: int = Field(1, ge=0, le=2**31 - 1)
    last_success: Epoch | None = None
    recovered: bool = False
    tasks: list[FailedTask] = Field(default_factory=list, max_length=50)
    more_tasks: int = Field(0, ge=0, le=2**31 - 1)
    upstream_failed: int = Field(0, ge=0, le=2**31 - 1)


# A lookup's outcome, counted in impactwatch_router_failure_lookups_total{outcome}.
OUTCOMES = ("ok", "not_found", "unavailable", "invalid")


class FailureSource:
    """`report(dag_id)`: the collector's answer, or None (no failure known, or no answer)."""

    def __init__(
        self,
        base_url: str,
        timeout: float = 2.0,
        ttl: float = 15.0,
        size: int = 256,
        count: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = base_url.rstrip("/") + "/v1/failures"
        self.timeout = timeout
        self.ttl = ttl
        self.size = size
        self.count = count or (lambda outcome: None)
        self.clock = clock
        self._cache: OrderedDict[str, tuple[float, FailureReport | None]] = OrderedDict()
        self._lock = threading.Lock()
        self._http = requests.Session()

    def report(self, dag_id: str) -> FailureReport | None:
        now = self.clock()
        with self._lock:
            hit = self._cache.get(dag_id)
            if hit is not None and hit[0] > now:
                return hit[1]
        found = self._ask(dag_id)
        with self._lock:
            self._cache[dag_id] = (now + self.ttl, found)
            self._cache.move_to_end(dag_id)
            while len(self._cache) > self.size:
                self._cache.popitem(last=False)
        return found

    def _ask(self, dag_id: str) -> FailureReport | None:
        try:
            answer = self._http.get(self.url, params={"dag_id": dag_id}, timeout=self.timeout)
        except requests.RequestException as exc:
            self.count("unavailable")
            log.warning("collector failures of %s: %s", dag_id, type(exc).__name__)
            return None
        if answer.status_code == 404:
            self.count("not_found")
            return None
        if answer.status_code != 200:
            self.count("unavailable")
            log.warning("collector failures of %s: HTTP %d", dag_id, answer.status_code)
            return None
        try:
            found = FailureReport.model_validate_json(answer.content)
        except ValidationError:
            self.count("invalid")
            log.warning("collector failures of %s: an answer out of bounds", dag_id)
            return None
        if found.dag_id != dag_id:
            self.count("invalid")
            return None
        self.count("ok")
        return found

    def close(self) -> None:
        self._http.close()
