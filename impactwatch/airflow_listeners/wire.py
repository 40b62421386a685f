"""Events in the collector's wire format (`impactwatch.events/v1`), built from Airflow objects.

A copy of the little the plugin needs to know of `impactwatch.collector.intake.parse` (the plugin
must not import the collector: pydantic and SQLAlchemy have no place in Airflow's processes); a unit
test runs these payloads through the collector's own parser to keep the two in step.

Objects are read by duck typing, so one builder serves the task runner's `RuntimeTaskInstance`,
the scheduler's and API server's ORM `TaskInstance`, and `DagRun`. An ORM attribute that is not
loaded is left out rather than read: reading it would query the database from inside the
scheduler's transaction. Fields the intake does not know yet are ignored there, harmlessly.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from impactwatch.airflow_listeners.resource_requests import executor_config_requests

SCHEMA = "impactwatch.events/v1"
ID_MAX = 250
TEXT_MAX = 1000
POOL_MAX = 256  # pool and queue (the collector's columns)
STATE_MAX = 30
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # refused by the intake (collector/intake/bounds.py)

Event = dict[str, Any]


def _unloaded(obj: object) -> frozenset[str] | set[str]:
    """Names of an ORM object's attributes not in memory (empty for plain objects)."""
    state = getattr(obj, "_sa_instance_state", None)
    if state is None:
        return frozenset()
    return set(state.unloaded)


def _get(obj: object, name: str, unloaded: frozenset[str] | set[str]) -> Any:
    if name in unloaded or f"_{name}" in unloaded:
        return None
    return getattr(obj, name, None)


def epoch(value: Any) -> float | None:
    """Unix seconds of a datetime (naive = UTC, as Airflow stores them), or None."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.timestamp()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _text(value: Any, limit: int = TEXT_MAX) -> str | None:
    """An enum's value or a string, cut to the intake's limit; None for anything else."""
    value = getattr(value, "value", value)
    if value is None:
        return None
    return _CONTROL.sub("", str(value))[:limit]


def _int(value: Any, default: int | None = None) -> int | None:
    if isinstance(value, bool):
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _duration(start: float | None, end: float | None) -> float | None:
    if start is None or end is None:
        return None
    return max(end - start, 0.0)


def _drop_none(event: Event) -> Event:
    return {k: v for k, v in event.items() if v is not None}


def task_try(
    ti: object,
    state: str | None = None,
    *,
    cpu_seconds: float | None = None,
    peak_rss_bytes: int | None = None,
    end_date: float | None = None,
    extra: dict[str, Any] | None = None,
) -> Event | None:
    """A `task_try` event, or None when the object lacks its key."""
    unloaded = _unloaded(ti)
    key = [_text(_get(ti, n, unloaded), ID_MAX) for n in ("dag_id", "run_id", "task_id")]
    try_number = _int(_get(ti, "try_number", unloaded))
    if not all(key) or try_number is None or try_number < 0:
        return None
    map_index = _int(_get(ti, "map_index", unloaded), -1)
    task = getattr(ti, "task", None) if "task" not in unloaded else None
    start = epoch(_get(ti, "start_date", unloaded))
    end = end_date if end_date is not None else epoch(_get(ti, "end_date", unloaded))
    duration = _get(ti, "duration", unloaded)
    if not isinstance(duration, int | float) or isinstance(duration, bool) or duration < 0:
        duration = _duration(start, end)
    pool = _get(ti, "pool", unloaded)
    if not isinstance(pool, str):
        pool = getattr(task, "pool", None)
    operator = _get(ti, "operator", unloaded)
    if not isinstance(operator, str):
        operator = getattr(task, "task_type", None)
    config = getattr(task, "executor_config", None)
    if config is None:
        config = _get(ti, "executor_config", unloaded)
    requested_cpu, requested_memory = executor_config_requests(config)
    event = {
        "type": "task_try",
        "dag_id": key[0],
        "run_id": key[1],
        "task_id": key[2],
        "map_index": map_index,
        "try_number": try_number,
        "state": _text(state if state is not None else _get(ti, "state", unloaded), STATE_MAX),
        "start_date": start,
        "end_date": end,
        "duration": duration,
        "pool": _text(pool, POOL_MAX),
        "queue": _text(_get(ti, "queue", unloaded), POOL_MAX),
        "operator": _text(operator),
        "cpu_seconds": max(cpu_seconds, 0.0) if cpu_seconds is not None else None,
        "peak_rss_bytes": max(peak_rss_bytes, 0) if peak_rss_bytes is not None else None,
        "requested_cpu": requested_cpu,  # executor_config's Kubernetes requests, for cost
        "requested_memory_bytes": requested_memory,
        # not in the v1 intake yet (ignored there): queued time and host, for queue wait
        "queued_date": epoch(_get(ti, "queued_dttm", unloaded)),
        "hostname": _text(_get(ti, "hostname", unloaded)),
    }
    if extra:
        event.update(extra)
    return _drop_none(event)


def dag_run(dr: object, state: str | None = None) -> Event | None:
    """A `dag_run` event (run type, data interval, trigger, duration), or None without a key."""
    unloaded = _unloaded(dr)
    dag_id = _text(_get(dr, "dag_id", unloaded), ID_MAX)
    run_id = _text(_get(dr, "run_id", unloaded), ID_MAX)
    if not dag_id or not run_id:
        return None
    start = epoch(_get(dr, "start_date", unloaded))
    end = epoch(_get(dr, "end_date", unloaded))
    clear_number = _int(_get(dr, "clear_number", unloaded))
    event = {
        "type": "dag_run",
        "dag_id": dag_id,
        "run_id": run_id,
        "state": _text(state if state is not None else _get(dr, "state", unloaded), STATE_MAX),
        "run_type": _text(_get(dr, "run_type", unloaded), 50),
        "logical_date": epoch(_get(dr, "logical_date", unloaded)),
        "run_after": epoch(_get(dr, "run_after", unloaded)),
        "queued_at": epoch(_get(dr, "queued_at", unloaded)),
        "start_date": start,
        "end_date": end,
        "clear_number": clear_number if clear_number is not None and clear_number >= 0 else None,
        # not in the v1 intake yet (ignored there)
        "data_interval_start": epoch(_get(dr, "data_interval_start", unloaded)),
        "data_interval_end": epoch(_get(dr, "data_interval_end", unloaded)),
        "triggered_by": _text(_get(dr, "triggered_by", unloaded), 50),
        "duration": _duration(start, end),
    }
    return _drop_none(event)


def asset(asset_event: object, timestamp: float) -> Event | None:
    """An `asset` event from Airflow's listener `AssetEvent` (its `.asset` has the URI).

    The hook carries no timestamp: `timestamp` is when the hook ran, a few milliseconds after
    Airflow wrote its `asset_event` row.
    """
    target = getattr(asset_event, "asset", asset_event)
    uri = _text(getattr(target, "uri", None), 1500)
    if not uri:
        return None
    event = {
        "type": "asset",
        "uri": uri,
        "timestamp": timestamp,
        "dag_id": _text(getattr(asset_event, "source_dag_id", None), ID_MAX) or None,
        "task_id": _text(getattr(asset_event, "source_task_id", None), ID_MAX) or None,
        "run_id": _text(getattr(asset_event, "source_run_id", None), ID_MAX) or None,
        "map_index": _int(getattr(asset_event, "source_map_index", None)),
        "name": _text(getattr(target, "name", None), 1500),
    }
    return _drop_none(event)


def encode(events: Iterable[Event]) -> bytes:
    """The body of one `POST /v1/events`."""
    return json.dumps(
        {"schema": SCHEMA, "events": list(events)}, separators=(",", ":"), default=str
    ).encode()
