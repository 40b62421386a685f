"""How two sightings of the same run or task try merge: pure, shared by both sources."""

from __future__ import annotations

from impactwatch.collector.events import DagRun, TaskTry

TRY_FIELDS = (
    "state",
    "start",
    "end",
    "queued",
    "duration",
    "pool",
    "queue",
    "operator",
    "cpu_seconds",
    "peak_rss_bytes",
)
RUN_FIELDS = (
    "state",
    "run_type",
    "logical_date",
    "run_after",
    "queued_at",
    "start",
    "end",
    "clear_number",
)


def merge_try(old: TaskTry, new: TaskTry) -> TaskTry:
    """`new` wins field by field where it knows something; a terminal state never regresses."""
    out = TaskTry(old.dag_id, old.run_id, old.task_id, old.map_index, old.try_number)
    for f in TRY_FIELDS:
        setattr(out, f, getattr(new, f) if getattr(new, f) is not None else getattr(old, f))
    if old.terminal and not new.terminal:
        out.state = old.state
        out.end = old.end if old.end is not None else out.end
    return out


def merge_run(old: DagRun, new: DagRun) -> DagRun:
    if new.clear_number < old.clear_number:
        return old
    out = DagRun(old.dag_id, old.run_id)
    for f in RUN_FIELDS:
        setattr(out, f, getattr(new, f) if getattr(new, f) is not None else getattr(old, f))
    if old.terminal and not new.terminal and new.clear_number == old.clear_number:
        out.state = old.state
        out.end = old.end if old.end is not None else out.end
    return out
