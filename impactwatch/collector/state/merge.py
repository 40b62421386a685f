"""How sightings of the same run, task try or asset event merge, and what a group of batches
changes in what is stored: pure, shared by both sources."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from impactwatch.collector.events import (
    RUN_KEY,
    TRY_KEY,
    AssetUpdate,
    DagRun,
    TaskTry,
    field_names,
)
from impactwatch.collector.state.schema import (
    HELD,
    RUN_DELAY,
    RUN_FINISHED,
    TRY_QUEUE_WAIT,
    TRY_SUCCEEDED,
)

# What a sighting can tell about a try or a run beyond its key, merged field by field.
TRY_FIELDS = tuple(f for f in field_names(TaskTry) if f not in TRY_KEY)
RUN_FIELDS = tuple(f for f in field_names(DagRun) if f not in RUN_KEY)


def _merged(old: Any, new: Any, names: tuple[str, ...]) -> dict[str, Any]:
    """`new`'s value of each field where it knows one, else `old`'s."""
    return {f: v if (v := getattr(new, f)) is not None else getattr(old, f) for f in names}


def merge_try(old: TaskTry, new: TaskTry) -> TaskTry:
    """`new` wins field by field where it knows something; a terminal state never regresses."""
    out = replace(old, **_merged(old, new, TRY_FIELDS))
    if old.terminal and not new.terminal:
        out.state = old.state
        out.end = old.end if old.end is not None else out.end
    return out


def merge_run(old: DagRun, new: DagRun) -> DagRun:
    if new.clear_number < old.clear_number:
        return old
    out = replace(old, **_merged(old, new, RUN_FIELDS))
    if old.terminal and not new.terminal and new.clear_number == old.clear_number:
        out.state = old.state
        out.end = old.end if old.end is not None else out.end
    return out


# Sightings of one task instance's event for one asset this close in time are the same event
# (listener and poller stamp it milliseconds apart); later ones are a re-run of the task
# instance (cleared), which updated the asset again.
SAME_ASSET_EVENT_SECONDS = 60.0


def asset_sighting(stored: float | None, incoming: float) -> str:
    """`new`, or `duplicate`, for an asset event of a task instance whose latest stored event
    (same key) has timestamp `stored`. Older ones are an earlier execution seen late: nothing
    new for freshness, which only moves forward."""
    if stored is None or incoming > stored + SAME_ASSET_EVENT_SECONDS:
        return "new"
    return "duplicate"


# --- a group of batches against what is stored ------------------------------------------------
@dataclass
class Changes:
    """What an ingest saw for the first time; the metrics state observes exactly these."""

    finished_runs: list[tuple[DagRun, list[TaskTry]]] = field(default_factory=list)
    terminal_runs: list[DagRun] = field(default_factory=list)
    started_runs: list[DagRun] = field(default_factory=list)
    queued_tries: list[TaskTry] = field(default_factory=list)
    succeeded_tries: list[TaskTry] = field(default_factory=list)
    assets: list[AssetUpdate] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=dict)

    def count(self, outcome: str, n: int = 1) -> None:
        if n:
            self.outcomes[outcome] = self.outcomes.get(outcome, 0) + n


# key -> (what is stored, its `observed` bits); the merges below update it in place and return
# the entries they changed (to write).
Known = dict[str, tuple[TaskTry, int]]
KnownRuns = dict[str, tuple[DagRun, int]]


def merge_tries(
    known: Known,
    batches: list[list[TaskTry]],
    changes: list[Changes],
    held: list[frozenset[str]] | None = None,
) -> Known:
    """Each batch's tries, batch after batch, into `known`; `changes[i]` is batch i's.

    New tries of a DAG in `held[i]` (Airflow does not know it) are stored, marked HELD, and
    not observed; a later sighting of a DAG no longer held observes what they hold. A try
    observed before (the poller's, so Airflow knows its DAG) is never held."""
    dirty: Known = {}
    for i, (tries, seen) in enumerate(zip(batches, changes, strict=True)):
        hold = held[i] if held else frozenset()
        merged: dict[str, TaskTry] = {}
        for t in tries:  # later events in one batch win
            merged[t.key] = t if t.key not in merged else merge_try(merged[t.key], t)
        for key, incoming in merged.items():
            stored = known.get(key)
            if stored is None:
                current, observed = incoming, 0
            else:
                current, observed = merge_try(stored[0], incoming), stored[1]
            if incoming.dag_id in hold and (stored is None or stored[1] & HELD):
                seen.count("unknown_dag")
                if stored is None or current != stored[0]:
                    known[key] = dirty[key] = (current, observed | HELD)
                continue
            unchanged = stored is not None and current == stored[0]
            if unchanged and not observed & HELD:
                seen.count("duplicate")
                continue
            observed &= ~HELD
            if (
                current.queued is not None
                and current.start is not None
                and not observed & TRY_QUEUE_WAIT
            ):
                observed |= TRY_QUEUE_WAIT
                seen.queued_tries.append(current)
            if current.state == "success" and not observed & TRY_SUCCEEDED:
                observed |= TRY_SUCCEEDED
                seen.succeeded_tries.append(current)
            seen.count("new" if stored is None else "duplicate" if unchanged else "updated")
            known[key] = dirty[key] = (current, observed)
    return dirty


def merge_runs(
    known: KnownRuns,
    batches: list[list[DagRun]],
    changes: list[Changes],
    held: list[frozenset[str]] | None = None,
) -> tuple[KnownRuns, list[list[DagRun]]]:
    """Each batch's runs into `known`; also the runs each batch saw finish (their task tries
    are read after the group's tries are written, for `Changes.finished_runs`). Runs of a DAG
    in `held[i]` are stored, marked HELD, and observed only by a later sighting (as tries)."""
    dirty: KnownRuns = {}
    finished: list[list[DagRun]] = []
    for i, (runs, seen) in enumerate(zip(batches, changes, strict=True)):
        hold = held[i] if held else frozenset()
        done: list[DagRun] = []
        finished.append(done)
        merged: dict[str, DagRun] = {}
        for r in runs:
            merged[r.key] = r if r.key not in merged else merge_run(merged[r.key], r)
        for key, incoming in merged.items():
            stored = known.get(key)
            if stored is None:
                before, current, observed = None, incoming, 0
            else:
                before, observed = stored
                if incoming.clear_number > before.clear_number:
                    observed = 0  # cleared and re-run: a new execution of the same run
                    current = incoming
                else:
                    current = merge_run(before, incoming)
            if incoming.dag_id in hold and (stored is None or stored[1] & HELD):
                seen.count("unknown_dag")
                if before is None or current != before:
                    known[key] = dirty[key] = (current, observed | HELD)
                continue
            unseen = before is None or bool(observed & HELD)  # never observed before
            if not unseen and current == before:
                seen.count("duplicate")
                continue
            observed &= ~HELD
            moved = before is not None and current.state != before.state
            if current.terminal and (unseen or moved):
                seen.terminal_runs.append(current)
            if current.terminal and current.end is not None and not observed & RUN_FINISHED:
                observed |= RUN_FINISHED
                done.append(current)
            if (
                current.start is not None
                and current.run_type == "scheduled"
                and current.run_after is not None
                and not observed & RUN_DELAY
            ):
                observed |= RUN_DELAY
                seen.started_runs.append(current)
            changed = before is not None and current != before
            seen.count("new" if before is None else "updated" if changed else "duplicate")
            known[key] = dirty[key] = (current, observed)
    return dirty, finished


def merge_assets(
    known: dict[str, float], batches: list[list[AssetUpdate]], changes: list[Changes]
) -> dict[str, AssetUpdate]:
    """Each batch's asset events into `known` (key -> stored timestamp); what to write."""
    dirty: dict[str, AssetUpdate] = {}
    for assets, seen in zip(batches, changes, strict=True):
        for a in assets:
            key = a.key
            if a.by_task:
                outcome = asset_sighting(known.get(key), a.timestamp)
            else:
                outcome = "new" if key not in known else "duplicate"
            seen.count(outcome)
            if outcome == "new":
                known[key] = a.timestamp
                dirty[key] = a
                seen.assets.append(a)
    return dirty
