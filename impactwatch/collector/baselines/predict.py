"""Predicted ends: where a run in flight is against its usual pace, and when it will likely end.

The learned task times (durations.TaskTimes) say when each task of a DAG usually ends, as an
offset from its run's start. A run in flight has finished some of them. Its progress point is
the finished task that usually ends last: the run is behind (or ahead) by how much later than
usual it got there, and further behind by however long the next task is taking past its usual
step (a slow task, a queue that does not move, a failed upstream that holds it all look alike
from here: time passes and nothing finishes). Every task not finished yet is expected at its
usual end plus that lag: the rest of the run at its usual pace, the remaining critical path as
history shows it (the median end offsets already hold the waits on upstream tasks and pools).

A run that has not started when it usually would have is the same with nothing finished: it is
behind by how long past its usual start it is (`pace_unstarted`).

Pure: no I/O, time passed in. Used by metrics/state.py on the writer, once per poll cycle.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

NOT_STARTED = ""  # `at`: the run has not started


@dataclass(frozen=True, slots=True)
class Pace:
    """A run in flight against its usual pace."""

    expected_end: float  # when the run will likely end
    behind: float  # seconds behind its usual pace (negative: ahead)
    at: str  # the first task not finished, in usual order (NOT_STARTED before the run starts)
    task_ends: Mapping[str, float]  # expected end of each task not finished yet


def pace(
    start: float,
    now: float,
    finished: Mapping[str, float],
    usual_ends: Mapping[str, float],
    usual_total: float,
) -> Pace | None:
    """Where a run started at `start` is at `now`: `finished` maps its finished tasks to their
    ends, `usual_ends` the DAG's tasks to their usual end offsets, `usual_total` its usual run
    duration. None without learned task times."""
    if not usual_ends:
        return None
    progress, reached = 0.0, 0.0  # usual and actual offset of the progress point
    for task, end in finished.items():
        usual = usual_ends.get(task)
        if usual is not None and (usual, end - start) > (progress, reached):
            progress, reached = usual, max(end - start, 0.0)
    pending = sorted((u, t) for t, u in usual_ends.items() if t not in finished)
    total = max(usual_total, max(usual_ends.values()))
    step = (pending[0][0] if pending else total) - progress  # usual time to the next end
    stuck = max(0.0, (now - start - reached) - max(step, 0.0))
    behind = (reached - progress) + stuck
    return Pace(
        expected_end=max(start + total + behind, now),
        behind=behind,
        at=pending[0][1] if pending else "",
        task_ends={t: max(start + u + behind, now) for u, t in pending},
    )


def pace_unstarted(
    usual_start: float, now: float, usual_ends: Mapping[str, float], usual_total: float
) -> Pace | None:
    """A run that usually starts by `usual_start` and has not started at `now`: if it started
    now, at its usual pace. None before `usual_start` or without learned task times."""
    if now <= usual_start or not usual_ends:
        return None
    total = max(usual_total, max(usual_ends.values()))
    return Pace(
        expected_end=now + total,
        behind=now - usual_start,
        at=NOT_STARTED,
        task_ends={t: now + u for t, u in usual_ends.items()},
    )
