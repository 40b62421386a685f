"""Parse `POST /v1/events` bodies (schema `impactwatch.events/v1`) into a `Batch`, at the edge.

Wire format (JSON):

    {"schema": "impactwatch.events/v1",
     "events": [
       {"type": "task_try", "dag_id": "d", "run_id": "r", "task_id": "t", "map_index": -1,
        "try_number": 1, "state": "success", "start_date": "2026-11-24T06:00:00+00:00",
        "end_date": 1795000000.5, "queued_date": "...", "duration": 12.5, "pool": "default_pool",
        "queue": "default",
        "operator": "PythonOperator", "cpu_seconds": 3.2, "peak_rss_bytes": 104857600,
        "requested_cpu": 0.5, "requested_memory_bytes": 1073741824,
        "error_type": "ConnectionError"},
       {"type": "dag_run", "dag_id": "d", "run_id": "r", "state": "success",
        "run_type": "scheduled", "logical_date": null, "run_after": "...", "start_date": "...",
        "end_date": "...", "queued_at": "...", "clear_number": 0},
       {"type": "asset", "uri": "s3://bucket/key", "timestamp": "...",
        "dag_id": "d", "task_id": "t", "run_id": "r", "map_index": -1}]}

Times are ISO 8601 with an offset, or Unix seconds. Every value is bounded as it enters
(intake/bounds.py): a bad body raises `IntakeError` whose message names the event index and
field (`events[3].end_date: not a finite number`); nothing of a bad body is stored. The JSON is
read by pydantic's parser (no recursion, no limit on digits to trip over: too deep, too long
or not JSON is a validation error like any other).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from impactwatch.collector.events import AssetUpdate, Batch, DagRun, TaskTry
from impactwatch.collector.intake.bounds import (
    AIRFLOW_KEY,
    PRINTABLE,
    Bytes,
    Count,
    Cpus,
    CpuSeconds,
    DagId,
    ErrorType,
    MapIndex,
    Operator,
    Pool,
    Queue,
    RequiredTime,
    RunId,
    RunState,
    RunType,
    Seconds,
    TaskId,
    Time,
    TryState,
    Uri,
)

SCHEMA = "impactwatch.events/v1"
MAX_EVENTS = 5000


class IntakeError(ValueError):
    """The body is not a valid event batch; the message is safe to return to the sender."""


class _Event(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, allow_inf_nan=False)


class TaskTryEvent(_Event):
    type: Literal["task_try"]
    dag_id: DagId
    run_id: RunId
    task_id: TaskId
    map_index: MapIndex = -1
    try_number: Count
    state: TryState | None = None
    start: Time = Field(None, validation_alias="start_date")
    end: Time = Field(None, validation_alias="end_date")
    queued: Time = Field(None, validation_alias="queued_date")
    duration: Seconds | None = None
    pool: Pool | None = None
    queue: Queue | None = None
    operator: Operator | None = None
    cpu_seconds: CpuSeconds | None = None
    peak_rss_bytes: Bytes | None = None
    requested_cpu: Cpus | None = None
    requested_memory_bytes: Bytes | None = None
    error_type: ErrorType | None = None  # a failed try's exception class (the listener's)


class DagRunEvent(_Event):
    type: Literal["dag_run"]
    dag_id: DagId
    run_id: RunId
    state: RunState | None = None
    run_type: RunType | None = None
    logical_date: Time = None
    run_after: Time = None
    queued_at: Time = None
    start: Time = Field(None, validation_alias="start_date")
    end: Time = Field(None, validation_alias="end_date")
    clear_number: Count = 0


class AssetEvent(_Event):
    type: Literal["asset"]
    uri: Uri
    timestamp: RequiredTime
    dag_id: DagId | None = None
    task_id: TaskId | None = None
    run_id: RunId | None = None
    map_index: MapIndex | None = None  # of the producing task instance


AnyEvent = Annotated[TaskTryEvent | DagRunEvent | AssetEvent, Field(discriminator="type")]


class Envelope(BaseModel):
    model_config = ConfigDict(extra="ignore")
    schema_: Literal["impactwatch.events/v1"] = Field(alias="schema")
    events: Annotated[list[AnyEvent], Field(max_length=MAX_EVENTS)]


_ENVELOPE = TypeAdapter(Envelope)
_TAGS = frozenset({"task_try", "dag_run", "asset"})


def _where(loc: tuple[int | str, ...]) -> str:
    """`events[3].end_date` from pydantic's ('events', 3, 'task_try', 'end_date')."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part not in _TAGS:
            out += f".{part}" if out else part
    return out


_PATTERNS = {
    AIRFLOW_KEY: "only letters, digits, '_', '.' and '-' (Airflow's rule for ids)",
    PRINTABLE: "control characters (NUL, newline, ...) are not allowed",
}


def _describe(err: ValidationError) -> str:
    first = err.errors(include_url=False)[0]
    where = _where(first["loc"])
    if where == "schema":
        sent = repr(first.get("input"))[:60] if first["type"] != "missing" else "none"
        return f"unsupported schema {sent}; this collector takes {SCHEMA!r}"
    kind, message = first["type"], first["msg"].removeprefix("Value error, ")
    if kind == "json_invalid":
        message = f"not JSON ({message.removeprefix('Invalid JSON: ')})"
    elif kind == "finite_number":
        message = "not a finite number"
    elif kind == "string_pattern_mismatch":
        message = _PATTERNS.get(first.get("ctx", {}).get("pattern", ""), message)
    elif first["type"] == "model_type" and not where:
        message = 'body must be a JSON object {"schema": ..., "events": [...]}'
    more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"{where or 'body'}: {message}{more}"


def parse_events(body: bytes) -> Batch:
    """The batch in a request body, or `IntakeError` with the first problem and where it is."""
    try:
        envelope = _ENVELOPE.validate_json(body)
    except ValidationError as exc:
        raise IntakeError(_describe(exc)) from None
    batch = Batch()
    for event in envelope.events:
        fields = event.model_dump(exclude={"type"})
        if isinstance(event, TaskTryEvent):
            batch.task_tries.append(TaskTry(**fields))
        elif isinstance(event, DagRunEvent):
            batch.dag_runs.append(DagRun(**fields))
        else:
            batch.assets.append(AssetUpdate(**fields))
    return batch
