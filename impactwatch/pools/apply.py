"""`impactwatch pools apply`: set each advised pool to its current window's size through
Airflow's REST API. `decide` is pure; `apply_advice` reads and patches one pool at a time.

Only pools the advice names are read or changed, and only their `slots`. A pool already at its
size is left alone (running it twice changes nothing); a pool running more tasks than the new
size, or unlimited (-1), is refused and left as it is; a dry run (the default) says what it
would do and changes nothing. Every change and refusal is one log line.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from impactwatch.pools.advice import PoolAdvice
from impactwatch.pools.airflow_api import AirflowApi, AirflowApiError, PoolState
from impactwatch.pools.usage import HourOfWeek

log = logging.getLogger(__name__)

Action = Literal["set", "would_set", "unchanged", "refused", "failed"]


@dataclass(frozen=True, slots=True)
class Change:
    pool: str
    window: str
    before: int | None
    target: int
    action: Action
    message: str


def decide(advice: PoolAdvice, state: PoolState, now: float, hours: HourOfWeek) -> Change:
    """What to do with one pool now: set it, leave it, or refuse (dry or not is the caller's)."""
    window = advice.window_at(now, hours)
    target = window.slots
    label = window.label()
    if state.slots == target:
        return Change(advice.pool, label, state.slots, target, "unchanged", "already at size")
    if state.slots < 0:
        return Change(
            advice.pool, label, state.slots, target, "refused", "unlimited (-1): not resized"
        )
    if target < state.running:
        return Change(
            advice.pool,
            label,
            state.slots,
            target,
            "refused",
            f"{state.running} tasks running: not shrunk below them, try again later",
        )
    return Change(advice.pool, label, state.slots, target, "set", f"for {label}")


def apply_advice(
    api: AirflowApi,
    advices: Iterable[PoolAdvice],
    now: float,
    hours: HourOfWeek,
    *,
    dry_run: bool = True,
) -> list[Change]:
    """Decide and (unless `dry_run`) patch each advised pool; one failure does not stop the rest."""
    changes = []
    for advice in advices:
        try:
            state = api.pool(advice.pool)
            change = decide(advice, state, now, hours)
            if change.action == "set":
                if dry_run:
                    change = Change(**{**_fields(change), "action": "would_set"})
                else:
                    after = api.set_slots(state, change.target)
                    if after.slots != change.target:
                        raise AirflowApiError(
                            "invalid", f"Airflow kept {after.slots} slots, not {change.target}"
                        )
        except AirflowApiError as exc:
            change = Change(advice.pool, "", None, advice.slots_at(now, hours), "failed", str(exc))
        _log(change)
        changes.append(change)
    return changes


def _fields(change: Change) -> dict[str, object]:
    return {name: getattr(change, name) for name in Change.__slots__}


def _log(c: Change) -> None:
    before = "?" if c.before is None else str(c.before)
    if c.action == "set":
        log.info("pool %s: %s -> %d slots (%s)", c.pool, before, c.target, c.message)
    elif c.action == "would_set":
        log.info(
            "pool %s: would set %s -> %d slots (%s; dry run)", c.pool, before, c.target, c.message
        )
    elif c.action == "unchanged":
        log.info("pool %s: %s slots, %s", c.pool, before, c.message)
    else:
        log.warning("pool %s: %s: %s", c.pool, c.action, c.message)
