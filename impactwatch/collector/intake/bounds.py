"""What an inbound event's fields may hold: each value bounded where it enters, so nothing the
state DB refuses (and the sender would retry for ever) or the metrics cannot sum gets past the
intake. Strings are no longer than their column (collector/state/schema.py) and carry no
control characters; numbers are finite and within their column and a sane range; times fall
between 1970 and 2100.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any

from pydantic import BeforeValidator, Field

from impactwatch.collector.state.schema import asset_update_t, dag_run_t, task_try_t

TIME_MIN = 0.0  # 1970-01-01T00:00:00Z
TIME_MAX = 4102444800.0  # 2100-01-01T00:00:00Z
INT32_MAX = 2**31 - 1  # Integer columns (map_index, try_number, clear_number)
SECONDS_MAX = 10 * 366 * 86400.0  # a task try or run longer than ten years is not one
CPU_SECONDS_MAX = 1000 * SECONDS_MAX  # ... on a thousand cores
BYTES_MAX = 2**50  # 1 PiB: more memory than any task has (stored as a float, exact below 2**53)
CPUS_MAX = 100_000.0  # cores requested

# Airflow's own rule for DAG and task ids (airflow.utils.helpers.KEY_REGEX); other strings
# must be free of control characters (NUL included: no PostgreSQL text can hold one). Lone
# UTF-16 surrogates never get this far: the JSON parser refuses them.
AIRFLOW_KEY = r"^[\w.-]+$"
PRINTABLE = r"^[^\x00-\x1f\x7f]*$"


def _length(column: Any) -> int:
    return int(column.type.length)


def _text(column: Any, pattern: str = PRINTABLE, min_length: int = 0) -> Any:
    return Annotated[str, Field(min_length=min_length, max_length=_length(column), pattern=pattern)]


def to_epoch(value: Any) -> float | None:
    """A time as float Unix seconds: ISO 8601 with an offset, or Unix seconds; finite and
    between TIME_MIN and TIME_MAX."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("a time is ISO 8601 with an offset, or Unix seconds")
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:
            seconds = math.inf
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{value[:40]!r} is not an ISO 8601 time") from None
        if parsed.tzinfo is None:
            raise ValueError(f"{value[:40]!r} has no UTC offset; add one (e.g. +00:00)")
        try:
            seconds = parsed.timestamp()
        except (OverflowError, ValueError):
            seconds = math.inf
    else:
        raise ValueError("a time is ISO 8601 with an offset, or Unix seconds")
    if not math.isfinite(seconds):
        raise ValueError("not a finite number")
    if not TIME_MIN <= seconds <= TIME_MAX:
        raise ValueError("outside 1970-01-01 .. 2100-01-01")
    return seconds


Time = Annotated[float | None, BeforeValidator(to_epoch)]
RequiredTime = Annotated[float, BeforeValidator(to_epoch)]

DagId = _text(dag_run_t.c.dag_id, AIRFLOW_KEY, 1)
TaskId = _text(task_try_t.c.task_id, AIRFLOW_KEY, 1)
RunId = _text(dag_run_t.c.run_id, PRINTABLE, 1)
RunState = _text(dag_run_t.c.state)
TryState = _text(task_try_t.c.state)
RunType = _text(dag_run_t.c.run_type)
Pool = _text(task_try_t.c.pool)
Queue = _text(task_try_t.c.queue)
Operator = _text(task_try_t.c.operator)
ErrorType = _text(task_try_t.c.error_type, PRINTABLE, 1)
Uri = _text(asset_update_t.c.uri, PRINTABLE, 1)

MapIndex = Annotated[int, Field(ge=-1, le=INT32_MAX)]
Count = Annotated[int, Field(ge=0, le=INT32_MAX)]
Seconds = Annotated[float, Field(ge=0, le=SECONDS_MAX, allow_inf_nan=False)]
CpuSeconds = Annotated[float, Field(ge=0, le=CPU_SECONDS_MAX, allow_inf_nan=False)]
Bytes = Annotated[int, Field(ge=0, le=BYTES_MAX)]
Cpus = Annotated[float, Field(ge=0, le=CPUS_MAX, allow_inf_nan=False)]
