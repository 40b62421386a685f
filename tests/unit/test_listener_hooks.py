"""The hooks: never raise (interrupts excepted), count what they drop, measure the task."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pluggy
import pytest

from impactwatch.airflow_listeners import wire
from impactwatch.airflow_listeners.config import ListenerConfig
from impactwatch.airflow_listeners.emitter import Emitter
from impactwatch.airflow_listeners.listener import ImpactwatchListener, make_listeners
from impactwatch.collector.intake.parse import parse_events

hookspec = pluggy.HookspecMarker("airflow")


class Spec:
    """Airflow 3.3's hookspecs, as in airflow/_shared/listeners/spec and airflow/listeners/spec."""

    @hookspec
    def on_starting(self, component): ...  # type: ignore[no-untyped-def]

    @hookspec
    def before_stopping(self, component): ...  # type: ignore[no-untyped-def]

    @hookspec
    def on_task_instance_running(self, previous_state, task_instance): ...  # type: ignore[no-untyped-def]

    @hookspec
    def on_task_instance_success(self, previous_state, task_instance): ...  # type: ignore[no-untyped-def]

    @hookspec
    def on_task_instance_failed(self, previous_state, task_instance, error): ...  # type: ignore[no-untyped-def]

    @hookspec
    def on_task_instance_skipped(self, previous_state, task_instance): ...  # type: ignore[no-untyped-def]

    @hookspec
    def on_dag_run_running(self, dag_run, msg): ...  # type: ignore[no-untyped-def]

    @hookspec
    def on_dag_run_success(self, dag_run, msg): ...  # type: ignore[no-untyped-def]

    @hookspec
    def on_dag_run_failed(self, dag_run, msg): ...  # type: ignore[no-untyped-def]

    @hookspec
    def on_asset_event_emitted(self, asset_event): ...  # type: ignore[no-untyped-def]


class TaskRunnerMarker:
    """Named like the component Airflow's task runner passes to its lifecycle hooks."""


class Recorder:
    """A second listener: it must still see every event after ours."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    @pluggy.HookimplMarker("airflow")
    def on_task_instance_success(self, previous_state, task_instance):  # type: ignore[no-untyped-def]
        self.seen.append(type(task_instance).__name__)


class Exploding:
    """A task instance whose every attribute raises `exc`."""

    def __init__(self, exc: BaseException) -> None:
        object.__setattr__(self, "_exc", exc)

    def __getattr__(self, name: str) -> Any:
        raise object.__getattribute__(self, "_exc")


def ti(**over: object) -> SimpleNamespace:
    fields: dict[str, object] = {
        "dag_id": "nightly_heavy_etl",
        "run_id": "scheduled__1",
        "task_id": "transform_ledger",
        "map_index": -1,
        "try_number": 1,
        "state": "running",
        "start_date": None,
        "end_date": None,
        "queue": "default",
        "task": SimpleNamespace(pool="heavy_etl", task_type="_PythonDecoratedOperator"),
    }
    fields.update(over)
    return SimpleNamespace(**fields)


class FakeEmitter(Emitter):
    def __init__(self, config: ListenerConfig) -> None:
        super().__init__(config, flush_at_exit=False)
        self.events: list[dict] = []
        self.flushes: list[float] = []

    def emit(self, event: dict) -> None:  # type: ignore[override]
        self.events.append(event)

    def flush(self, timeout: float, *, answered: bool = True) -> bool:
        self.flushes.append((timeout, answered))
        return True


@pytest.fixture
def listener(tmp_path: Path) -> ImpactwatchListener:
    cfg = ListenerConfig(url="http://c.invalid/v1/events", state_dir=str(tmp_path))
    return ImpactwatchListener(FakeEmitter(replace(cfg, flush_timeout=0.04, exit_timeout=1.0)))


def events(listener: ImpactwatchListener) -> list[dict]:
    return listener.emitter.events  # type: ignore[attr-defined]


def hooks(listener: ImpactwatchListener, *others: object) -> Any:
    """Hooks as Airflow calls them; ours registered last, so pluggy calls it first."""
    manager = pluggy.PluginManager("airflow")
    manager.add_hookspecs(Spec)
    for other in others:
        manager.register(other)
    manager.register(listener)
    return manager.hook


def test_unconfigured_registers_nothing_and_bad_settings_only_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert make_listeners({}) == []
    with caplog.at_level(logging.WARNING, "impactwatch.listener"):
        assert make_listeners({"IMPACTWATCH_COLLECTOR_URL": "collector:9464"}) == []
    assert "impactwatch listener disabled: IMPACTWATCH_COLLECTOR_URL=" in caplog.text
    (made,) = make_listeners({"IMPACTWATCH_COLLECTOR_URL": "http://collector:9464"})
    assert isinstance(made, ImpactwatchListener)


def test_a_task_try_is_measured_from_running_to_success(listener: ImpactwatchListener) -> None:
    hook = hooks(listener)
    task = ti()
    hook.on_task_instance_running(previous_state="queued", task_instance=task)
    started = time.process_time()
    while time.process_time() - started < 0.2:
        sum(i * i for i in range(1000))
    task.state = "success"
    hook.on_task_instance_success(previous_state="running", task_instance=task)
    running, success = events(listener)
    assert running["state"] == "running" and "cpu_seconds" not in running
    assert success["state"] == "success" and "end_date" in success  # now, as the TI had none
    assert 0.18 <= success["cpu_seconds"] < 0.5
    assert success["peak_rss_bytes"] > 10 * 2**20
    (t,) = parse_events(wire.encode([success])).task_tries
    assert t.pool == "heavy_etl" and t.cpu_seconds == success["cpu_seconds"]


def test_a_failed_try_is_failed_whether_or_not_it_retries(listener: ImpactwatchListener) -> None:
    hook = hooks(listener)
    hook.on_task_instance_failed(
        previous_state="running", task_instance=ti(state="up_for_retry"), error=ValueError("x")
    )
    hook.on_task_instance_failed(
        previous_state="running", task_instance=ti(state="failed"), error="heartbeat timeout"
    )
    retry, final = events(listener)
    assert (retry["state"], retry["will_retry"], retry["error_type"]) == (
        "failed",
        True,
        "ValueError",
    )
    assert (final["state"], final["will_retry"], final["error_type"]) == ("failed", False, "str")


def test_dag_runs_and_assets(listener: ImpactwatchListener) -> None:
    hook = hooks(listener)
    run = SimpleNamespace(dag_id="d", run_id="r", run_type="manual")
    hook.on_dag_run_running(dag_run=run, msg="")
    hook.on_dag_run_success(dag_run=run, msg="success")
    hook.on_dag_run_failed(dag_run=run, msg="task_failure")
    hook.on_asset_event_emitted(asset_event=SimpleNamespace(asset=SimpleNamespace(uri="s3://x")))
    assert [(e["type"], e.get("state")) for e in events(listener)] == [
        ("dag_run", "running"),
        ("dag_run", "success"),
        ("dag_run", "failed"),
        ("asset", None),
    ]


def test_a_task_process_flushes_briefly_other_components_longer(
    listener: ImpactwatchListener,
) -> None:
    hook = hooks(listener)
    hook.before_stopping(component=TaskRunnerMarker())
    hook.before_stopping(component=SimpleNamespace(job_type="SchedulerJob"))
    hook.on_starting(component=TaskRunnerMarker())
    # a task's end waits for the send, not the answer; a stopping scheduler for the answer
    assert listener.emitter.flushes == [(0.04, False), (1.0, True)]  # type: ignore[attr-defined]


def test_an_error_inside_a_hook_is_counted_logged_once_and_swallowed(
    listener: ImpactwatchListener, caplog: pytest.LogCaptureFixture
) -> None:
    hook = hooks(listener)
    broken = Exploding(RuntimeError("boom"))
    with caplog.at_level(logging.WARNING, "impactwatch.listener"):
        for _ in range(3):
            hook.on_task_instance_running(previous_state=None, task_instance=broken)
            hook.on_dag_run_success(dag_run=broken, msg="")
    assert listener.emitter.stats.dropped == {"hook_error": 6}
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "impactwatch: on_task_instance_running dropped an event: RuntimeError",
        "impactwatch: on_dag_run_success dropped an event: RuntimeError",
    ]


def test_other_listeners_still_see_the_event(listener: ImpactwatchListener) -> None:
    """pluggy stops at the first exception: ours never raises, so the next listener runs."""
    recorder = Recorder()
    hook = hooks(listener, recorder)
    hook.on_task_instance_success(previous_state=None, task_instance=Exploding(OSError()))
    hook.on_task_instance_success(previous_state=None, task_instance=ti())
    assert recorder.seen == ["Exploding", "SimpleNamespace"]
    assert listener.emitter.stats.dropped == {"hook_error": 1}


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit])
def test_interrupts_are_counted_and_re_raised(
    listener: ImpactwatchListener, interrupt: type[BaseException]
) -> None:
    hook = hooks(listener)
    with pytest.raises(interrupt):
        hook.on_task_instance_running(previous_state=None, task_instance=Exploding(interrupt()))
    assert listener.emitter.stats.dropped == {"hook_error": 1}
