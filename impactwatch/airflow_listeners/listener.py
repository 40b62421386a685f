"""The listener Airflow calls: build an event, queue it, return. Never raises, never waits long.

Every hook catches everything, logs one short line and counts the drop: pluggy stops at the
first exception, so a raising hook would hide the event from every other listener installed.
Interrupts (KeyboardInterrupt, SystemExit, Airflow's task timeout and termination: the
BaseExceptions that are not Exceptions) are counted too, then re-raised: swallowing them
would keep a task alive that Airflow is stopping.

Only a task process waits, once, at its end (`before_stopping`): until its events are handed
to the kernel, at most the flush timeout, never for the collector's answer. The scheduler's
dag-run hooks run inside its scheduling transaction and only enqueue.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from pluggy import HookimplMarker

from impactwatch.airflow_listeners import config as settings
from impactwatch.airflow_listeners import wire
from impactwatch.airflow_listeners.emitter import Emitter
from impactwatch.airflow_listeners.resources import Meter

log = logging.getLogger("impactwatch.listener")
hookimpl = HookimplMarker("airflow")  # the marker airflow.listeners.hookimpl is

F = TypeVar("F", bound=Callable[..., None])
_TASK_RUNNER = "TaskRunnerMarker"  # the `component` of the task runner's lifecycle hooks


def _guarded(hook: F) -> F:
    """Run a hook body; on any error log one line, count it, and return (interrupts re-raise)."""

    @functools.wraps(hook)
    def wrapper(self: ImpactwatchListener, *args: Any, **kwargs: Any) -> None:
        try:
            hook(self, *args, **kwargs)
        except BaseException as exc:
            self.hook_failed(hook.__name__, exc)
            if not isinstance(exc, Exception):
                raise

    return wrapper  # type: ignore[return-value]


def _try_key(ti: object) -> tuple | None:
    names = ("dag_id", "run_id", "task_id", "map_index", "try_number")
    key = tuple(getattr(ti, n, None) for n in names)
    return None if None in key[:3] else key


class ImpactwatchListener:
    """Hook implementations for Airflow 3's listener spec (pluggy passes arguments by name)."""

    def __init__(
        self,
        emitter: Emitter,
        meter: Meter | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.emitter = emitter
        self.meter = meter or Meter()
        self.clock = clock
        self._logged: set[tuple[str, str]] = set()

    def hook_failed(self, hook: str, exc: BaseException) -> None:
        try:
            self.emitter.count_drop("hook_error")
            kind = (hook, type(exc).__name__)
            level = logging.WARNING if kind not in self._logged else logging.DEBUG
            self._logged.add(kind)
            log.log(level, "impactwatch: %s dropped an event: %s", hook, kind[1])
        except Exception:  # logging itself failed: nothing more to do
            pass

    def _emit(self, event: wire.Event | None) -> None:
        if event is not None:
            self.emitter.emit(event)

    # --- lifecycle --------------------------------------------------------------------------
    @hookimpl
    @_guarded
    def on_starting(self, component: object) -> None:
        """Nothing to do: the sender thread starts with the first event."""

    @hookimpl
    @_guarded
    def before_stopping(self, component: object) -> None:
        """A task's end: send within the flush timeout, not waiting for the collector's answer.
        Other components (scheduler...) stop: wait for the answer, up to the exit timeout."""
        cfg = self.emitter.config
        if type(component).__name__ == _TASK_RUNNER:
            self.emitter.flush(cfg.flush_timeout, answered=False)
        else:
            self.emitter.flush(cfg.exit_timeout)

    # --- task instances ---------------------------------------------------------------------
    @hookimpl
    @_guarded
    def on_task_instance_running(self, previous_state: object, task_instance: object) -> None:
        key = _try_key(task_instance)
        if key is not None:
            self.meter.start(key)
        self._emit(wire.task_try(task_instance, "running"))

    @hookimpl
    @_guarded
    def on_task_instance_success(self, previous_state: object, task_instance: object) -> None:
        self._ended(task_instance, "success")

    @hookimpl
    @_guarded
    def on_task_instance_failed(
        self, previous_state: object, task_instance: object, error: object
    ) -> None:
        # The try failed, whether or not the task retries (as task_instance_history records it).
        state = wire._text(getattr(task_instance, "state", None))
        extra: dict[str, Any] = {"will_retry": state == "up_for_retry"}
        if error is not None:
            extra["error_type"] = _error_type(error)
        self._ended(task_instance, "failed", extra)

    @hookimpl
    @_guarded
    def on_task_instance_skipped(self, previous_state: object, task_instance: object) -> None:
        self._ended(task_instance, "skipped")

    def _ended(self, ti: object, state: str, extra: dict[str, Any] | None = None) -> None:
        key = _try_key(ti)
        usage = self.meter.stop(key) if key is not None else None
        end = None if getattr(ti, "end_date", None) is not None else self.clock()
        self._emit(
            wire.task_try(
                ti,
                state,
                cpu_seconds=usage.cpu_seconds if usage else None,
                peak_rss_bytes=usage.peak_rss_bytes if usage else None,
                end_date=end,
                extra=extra,
            )
        )

    # --- dag runs ---------------------------------------------------------------------------
    @hookimpl
    @_guarded
    def on_dag_run_running(self, dag_run: object, msg: str) -> None:
        self._emit(wire.dag_run(dag_run, "running"))

    @hookimpl
    @_guarded
    def on_dag_run_success(self, dag_run: object, msg: str) -> None:
        self._emit(wire.dag_run(dag_run, "success"))

    @hookimpl
    @_guarded
    def on_dag_run_failed(self, dag_run: object, msg: str) -> None:
        self._emit(wire.dag_run(dag_run, "failed"))

    # --- assets -----------------------------------------------------------------------------
    @hookimpl
    @_guarded
    def on_asset_event_emitted(self, asset_event: object) -> None:
        """Fires with `on_asset_changed` for each event, and knows its source task."""
        self._emit(wire.asset(asset_event, self.clock()))


def _error_type(error: object) -> str:
    """The exception's class name as the collector takes it: printable, at most 200 characters
    (collector/intake/bounds.py), so an odd name can never get a whole batch refused."""
    name = "str" if isinstance(error, str) else type(error).__name__
    kept = "".join(c for c in name if c.isprintable())[:200]
    return kept or "Exception"


def make_listeners(env: Mapping[str, str] | None = None) -> list[ImpactwatchListener]:
    """The listeners to register: none when unconfigured or misconfigured (logged once)."""
    try:
        cfg = settings.from_env(env)
    except settings.ConfigError as exc:
        log.warning("impactwatch listener disabled: %s", exc)
        return []
    except Exception as exc:  # never break Airflow's plugin loading
        log.warning("impactwatch listener disabled: %s", type(exc).__name__)
        return []
    if cfg is None:
        return []
    return [ImpactwatchListener(Emitter(cfg), Meter())]
