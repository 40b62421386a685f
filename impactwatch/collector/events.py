"""The records both sources produce (poller and listener), keyed so nothing counts twice.

A task try is `(dag_id, run_id, task_id, map_index, try_number)`, a DAG run `(dag_id, run_id)`,
an asset update made by a task `(dag_id, run_id, task_id, map_index, uri)` (the two sources
stamp it milliseconds apart), one from outside a task (API) `(uri, timestamp)`. Times are float
Unix seconds (UTC), never naive datetimes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, fields

DAG_RUN_TERMINAL = frozenset({"success", "failed"})
TASK_TERMINAL = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})
SEP = "\x1f"  # joins key parts: cannot appear in Airflow ids
ASSET_KEY_MAX = 1600  # iw_asset_update.k


@dataclass(slots=True, kw_only=True)
class TaskTry:
    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    try_number: int
    state: str | None = None
    start: float | None = None
    end: float | None = None
    queued: float | None = None
    duration: float | None = None
    pool: str | None = None
    queue: str | None = None
    operator: str | None = None
    cpu_seconds: float | None = None
    peak_rss_bytes: int | None = None
    requested_cpu: float | None = None  # executor_config / Kubernetes requests (listener)
    requested_memory_bytes: int | None = None
    error_type: str | None = None  # class name of a failed try's exception (listener only)

    @property
    def key(self) -> str:
        return SEP.join(
            (self.dag_id, self.run_id, self.task_id, str(self.map_index), str(self.try_number))
        )

    @property
    def run_key(self) -> str:
        return SEP.join((self.dag_id, self.run_id))

    @property
    def terminal(self) -> bool:
        return self.state in TASK_TERMINAL


@dataclass(slots=True, kw_only=True)
class DagRun:
    dag_id: str
    run_id: str
    state: str | None = None
    run_type: str | None = None
    logical_date: float | None = None
    run_after: float | None = None
    queued_at: float | None = None
    start: float | None = None
    end: float | None = None
    clear_number: int = 0

    @property
    def key(self) -> str:
        return SEP.join((self.dag_id, self.run_id))

    @property
    def terminal(self) -> bool:
        return self.state in DAG_RUN_TERMINAL


@dataclass(slots=True, kw_only=True)
class AssetUpdate:
    uri: str
    timestamp: float
    dag_id: str | None = None
    task_id: str | None = None
    run_id: str | None = None
    map_index: int | None = None  # of the producing task instance; None is Airflow's -1

    @property
    def by_task(self) -> bool:
        """Produced by a task instance (not posted through Airflow's API)."""
        return bool(self.dag_id and self.run_id and self.task_id)

    @property
    def key(self) -> str:
        """The producing task instance and URI: the listener stamps the event a few ms after
        Airflow's row, so a timestamp would split one event in two. Else URI and timestamp."""
        if not self.by_task:
            return SEP.join((self.uri, repr(self.timestamp)))
        index = -1 if self.map_index is None else self.map_index
        parts = ("ti", self.dag_id or "", self.run_id or "", self.task_id or "", str(index))
        key = SEP.join((*parts, self.uri))
        if len(key) <= ASSET_KEY_MAX:
            return key
        return SEP.join(("ti", hashlib.sha256(key.encode()).hexdigest()))


def field_names(record: type) -> tuple[str, ...]:
    """A record's fields, in order: the one list readers and writers build rows from."""
    return tuple(f.name for f in fields(record))


TRY_KEY = ("dag_id", "run_id", "task_id", "map_index", "try_number")
RUN_KEY = ("dag_id", "run_id")


@dataclass
class Batch:
    """What one poll cycle or one intake request hands to the store.

    `held_dags`: DAGs of the batch that Airflow does not know (yet). Their runs and tries are
    stored but not observed, so no metric series exists for a DAG id only the listener names;
    the poller's sighting of the same facts, once Airflow knows the DAG, observes them
    (collector/state/merge.py)."""

    task_tries: list[TaskTry] = field(default_factory=list)
    dag_runs: list[DagRun] = field(default_factory=list)
    assets: list[AssetUpdate] = field(default_factory=list)
    held_dags: frozenset[str] = frozenset()

    def dag_ids(self) -> set[str]:
        return {t.dag_id for t in self.task_tries} | {r.dag_id for r in self.dag_runs}

    def __len__(self) -> int:
        return len(self.task_tries) + len(self.dag_runs) + len(self.assets)
