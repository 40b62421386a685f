"""`impactwatch pools apply`: set each advised pool to its current window's size through
Airflow's REST API. `decide` is pure; `apply_advice` reads and patches one pool at a time.

Only pools the advice names are read or changed, and only their `slots`. A pool already at its
size is left alone (running it twice changes nothing); a pool running more tasks than the new
size, or unlimited (-1), is refused and left as it is; a dry run (the default) says what it
would do and changes nothing. Every change and refusal is one log line.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from impactwatch.contract import metrics as c
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


def _log(ch: Change) -> None:
    before = "?" if ch.before is None else str(ch.before)
    if ch.action == "set":
        log.info("pool %s: %s -> %d slots (%s)", ch.pool, before, ch.target, ch.message)
    elif ch.action == "would_set":
        log.info(
            "pool %s: would set %s -> %d slots (%s; dry run)",
            ch.pool,
            before,
            ch.target,
            ch.message,
        )
    elif ch.action == "unchanged":
        log.info("pool %s: %s slots, %s", ch.pool, before, ch.message)
    else:
        log.warning("pool %s: %s: %s", ch.pool, ch.action, ch.message)


class ApplyCounts(Collector):
    """What `apply --loop` did, pool by pool, since it started: its `/metrics` with `--listen`
    (`impactwatch_pool_apply_changes_total{pool,action}`). Pools are the advised ones only."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str]] = Counter()

    def add(self, changes: Iterable[Change]) -> None:
        with self._lock:
            self._counts.update((ch.pool, ch.action) for ch in changes)

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            counts = dict(self._counts)
        spec = c.POOL_APPLY_CHANGES
        family = CounterMetricFamily(spec.family, spec.help, labels=spec.labels)
        for pool in sorted({pool for pool, _ in counts}):
            for action in c.POOL_APPLY_ACTIONS:
                family.add_metric([pool, action], float(counts.get((pool, action), 0)))
        yield family
