"""Parse `POST /v1/events` bodies (schema `impactwatch.events/v1`) into a `Batch`, at the edge.

Wire format (JSON):

    {"schema": "impactwatch.events/v1",
     "events": [
       {"type": "task_try", "dag_id": "d", "run_id": "r", "task_id": "t", "map_index": -1,
        "try_number": 1, "state": "success", "start_date": "2026-11-24T06:00:00+00:00",
        "end_date": 1795000000.5, "queued_date": "...", "duration": 12.5, "pool": "default_pool",
        "queue": "default",
        "operator": "PythonOperator", "cpu_seconds": 3.2, "peak_rss_bytes": 104857600,
        "requested_cpu": 0.5, "requested_memory_bytes": 1073741824},
       {"type": "dag_run", "dag_id": "d", "run_id": "r", "state": "success",
        "run_type": "scheduled", "logical_date": null, "run_after": "...", "start_date": "...",
        "end_date": "...", "queued_at": "...", "clear_number": 0},
       {"type": "asset", "uri": "s3://bucket/key", "timestamp": "...",
        "dag_id": "d", "task_id": "t", "run_id": "r", "map_index": -1}]}

Times are ISO 8601 with an offset, or Unix seconds. A bad body raises `IntakeError` whose
message names the event index and field; nothing of a bad body is stored.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError

from impactwatch.collector.events import AssetUpdate, Batch, DagRun, TaskTry

SCHEMA = "impactwatch.events/v1"
MAX_EVENTS = 5000


class IntakeError(ValueError):
    """The body is not a valid event batch; the message is safe to return to the sender."""


def _to_epoch(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("a time is ISO 8601 with an offset, or Unix seconds")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            raise ValueError(f"{value!r} has no UTC offset; add one (e.g. +00:00)")
        return parsed.timestamp()
    raise ValueError("a time is ISO 8601 with an offset, or Unix seconds")


Time = Annotated[float | None, BeforeValidator(_to_epoch)]
Id = Annotated[str, Field(min_length=1, max_length=250)]
Short = Annotated[str, Field(max_length=1000)]


class _Event(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class TaskTryEvent(_Event):
    type: Literal["task_try"]
    dag_id: Id
    run_id: Id
    task_id: Id
    map_index: int = -1
    try_number: int = Field(ge=0)
    state: Annotated[str, Field(max_length=30)] | None = None
    start: Time = Field(None, validation_alias="start_date")
    end: Time = Field(None, validation_alias="end_date")
    queued: Time = Field(None, validation_alias="queued_date")
    duration: Annotated[float, Field(ge=0)] | None = None
    pool: Short | None = None
    queue: Short | None = None
    operator: Short | None = None
    cpu_seconds: Annotated[float, Field(ge=0)] | None = None
    peak_rss_bytes: Annotated[int, Field(ge=0)] | None = None
    requested_cpu: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    requested_memory_bytes: Annotated[int, Field(ge=0)] | None = None


class DagRunEvent(_Event):
    type: Literal["dag_run"]
    dag_id: Id
    run_id: Id
    state: Annotated[str, Field(max_length=30)] | None = None
    run_type: Annotated[str, Field(max_length=50)] | None = None
    logical_date: Time = None
    run_after: Time = None
    queued_at: Time = None
    start: Time = Field(None, validation_alias="start_date")
    end: Time = Field(None, validation_alias="end_date")
    clear_number: int = Field(default=0, ge=0)


class AssetEvent(_Event):
    type: Literal["asset"]
    uri: Annotated[str, Field(min_length=1, max_length=1500)]
    timestamp: Annotated[float, BeforeValidator(_to_epoch)]
    dag_id: Id | None = None
    task_id: Id | None = None
    run_id: Id | None = None
    map_index: int | None = None  # of the producing task instance


AnyEvent = Annotated[TaskTryEvent | DagRunEvent | AssetEvent, Field(discriminator="type")]


class Envelope(BaseModel):
    model_config = ConfigDict(extra="ignore")
    schema_: Literal["impactwatch.events/v1"] = Field(alias="schema")
    events: Annotated[list[AnyEvent], Field(max_length=MAX_EVENTS)]


_ENVELOPE = TypeAdapter(Envelope)


def _describe(err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"] if p not in {"task_try", "dag_run", "asset"})
    more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"{where or 'body'}: {first['msg']}{more}"


def parse_events(body: bytes) -> Batch:
    """The batch in a request body, or `IntakeError` with the first problem and where it is."""
    try:
        raw = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IntakeError(f"body is not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise IntakeError('body must be a JSON object {"schema": ..., "events": [...]}')
    if raw.get("schema") != SCHEMA:
        raise IntakeError(
            f"unsupported schema {raw.get('schema')!r}; this collector takes {SCHEMA!r}"
        )
    try:
        envelope = _ENVELOPE.validate_python(raw)
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
