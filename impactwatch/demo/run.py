"""`impactwatch demo`: the whole stack on loopback, a scripted story, a summary.

    impactwatch demo                       # Airflow + plugin, collector, Prometheus,
                                           # Alertmanager, router; the ~5 min story
    impactwatch demo --quick               # real DAG runs read by the collector, no servers
    impactwatch demo --airflow-db URL      # the stack (no story) against an existing Airflow

Everything started here is stopped on exit, on Ctrl-C and on SIGTERM (see processes.py).
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from impactwatch.alert_rules.settings import SettingsError
from impactwatch.catalog.loader import load_catalog
from impactwatch.collector.http_app import collector_app
from impactwatch.collector.service import CollectorService
from impactwatch.collector.settings import CollectorSettings
from impactwatch.demo.processes import Processes, StartError
from impactwatch.demo.report import root_cause_check, scrape, summarize, table
from impactwatch.demo.scenario import QUIET_SECONDS, ROOT_CAUSES, SETTLE_SECONDS, Step, story
from impactwatch.demo.stack import EXAMPLE_CATALOG, Stack
from impactwatch.demo.watch import (
    AlertBoard,
    MessageLog,
    fetch_alerts,
    message_line,
    worth_showing,
)
from impactwatch.devtools.airflow_home import AirflowCommandError, populate, reader_db_url
from impactwatch.serving import Server

log = logging.getLogger("impactwatch.demo")


def _say(text: str) -> None:
    print(text, flush=True)


def _clock(started: float) -> str:
    elapsed = int(time.monotonic() - started)
    return f"[{elapsed // 60}:{elapsed % 60:02d}]"


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (a closed terminal, `kill`) takes the same way out as Ctrl-C."""

    def raise_interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class Watcher:
    """Prints alerts and Slack messages as they change, with the story's clock."""

    def __init__(self, stack: Stack, started: float) -> None:
        self.stack = stack
        self.started = started
        self.board = AlertBoard()
        self.messages = MessageLog(stack.messages_path)
        self.processes_reported: set[str] = set()

    def poll(self) -> None:
        lines: list[str] = []
        try:
            lines += self.board.update(fetch_alerts(self.stack.url("alertmanager")))
        except OSError as exc:
            lines.append(f"(alertmanager not answering: {exc})")
        lines += [message_line(r) for r in self.messages.new() if worth_showing(r)]
        for child in self.stack.processes.dead():
            if child.name not in self.processes_reported:
                self.processes_reported.add(child.name)
                lines.append(f"!! {child.name} exited ({child.proc.returncode}); see {child.log}")
        for line in lines:
            _say(f"{_clock(self.started)} {line}")

    def wait_until(self, deadline: float, done: Callable[[], bool] | None = None) -> None:
        while time.monotonic() < deadline:
            self.poll()
            if done is not None and done():
                return
            time.sleep(min(2.0, max(deadline - time.monotonic(), 0)))


def _run_step(home_runner: Callable[[Step], None], step: Step, w: Watcher) -> None:
    _say(f"{_clock(w.started)} >> {step.title}")
    if step.runs:
        home_runner(step)
    w.poll()


def run_demo(
    workdir: str = ".demo", *, scale: float = 1.0, airflow_ui: bool = True, wait: bool = True
) -> int:
    """The full stack and the story. `wait`: after the summary, keep running until Ctrl-C."""
    work = Path(workdir).resolve()
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    processes = Processes(work / "logs")
    stack = Stack(work, processes, airflow_ui=airflow_ui)
    with _sigterm_as_interrupt():
        try:
            return _run_stack_and_story(stack, scale, wait)
        except KeyboardInterrupt:
            _say("\nstopping (Ctrl-C) ...")
            return 130
        except (StartError, AirflowCommandError, SettingsError, OSError) as exc:
            _say(f"\nthe demo could not go on: {exc}")
            return 1
        finally:
            processes.stop()
            _say(f"stopped everything the demo started; its files are in {work}")


def _run_stack_and_story(stack: Stack, scale: float, wait: bool) -> int:
    started = time.monotonic()
    _say(f"impactwatch demo: the whole stack on loopback, files in {stack.work}")
    stack.write_catalog()
    config_dir = stack.write_rules()
    home = stack.airflow_home()
    _say("1/3  Airflow: metadata DB (SQLite), example DAGs, the impactwatch plugin ...")
    home.migrate()
    home.reserialize()
    home.set_pool("heavy_etl", 2, "Nightly ETL: 6 vCPU, 12 GB")
    _say(f"     done in {time.monotonic() - started:.0f}s")
    _say("2/3  starting the collector, router, Prometheus and Alertmanager ...")
    stack.start_collector(reader_db_url(home.db_url))
    stack.start_router()
    stack.start_alertmanager(config_dir)
    stack.start_prometheus(config_dir)
    if stack.airflow_ui:
        stack.start_airflow_ui(home)
    _say(_urls(stack))

    steps = story(scale)
    _say(f"3/3  the story ({_minutes(steps[-1].at + SETTLE_SECONDS * scale)}):")
    t0 = time.monotonic()
    w = Watcher(stack, t0)

    def runner(step: Step) -> None:
        results = home.run_dags(step.runs, task_processes=True)
        for r in results:
            _say(f"{_clock(t0)}    airflow  {r.dag_id:<26} {r.state}")

    for step in steps:
        w.wait_until(t0 + step.at)
        _run_step(runner, step, w)
    # Keep watching until every alert of the story resolved and the router went quiet (its
    # resolution messages sent), or the settle time ran out.
    w.wait_until(
        time.monotonic() + SETTLE_SECONDS * scale,
        done=lambda: (
            bool(w.board.fired)
            and not w.board.active
            and time.monotonic() - w.messages.last_at > QUIET_SECONDS
        ),
    )
    text, failures = _summary(stack, w)
    _say(text)
    for failure in failures:
        _say(f"story check FAILED: {failure}")
    if wait and sys.stdin.isatty():
        _say("\nthe stack keeps running; press Ctrl-C to stop it")
        while True:
            w.wait_until(time.monotonic() + 3600)
    return 1 if failures else 0


def _minutes(seconds: float) -> str:
    return f"about {seconds / 60:.0f} min" if seconds >= 90 else f"about {seconds:.0f} s"


def _urls(stack: Stack) -> str:
    rows = [
        ("Prometheus alerts", f"{stack.url('prometheus')}/alerts"),
        ("Alertmanager", f"{stack.url('alertmanager')}/#/alerts"),
        ("collector metrics", f"{stack.url('collector')}/metrics"),
        ("router metrics", f"{stack.url('router')}/metrics"),
        ("Slack messages (JSON Lines)", str(stack.messages_path)),
        ("logs", str(stack.processes.logs)),
    ]
    if stack.airflow_ui:
        rows.insert(0, ("Airflow UI", stack.url("airflow")))
    return table("     open these while it runs:", ("what", "where"), rows)


def _records(path: Path) -> list[dict[str, Any]]:
    records = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue  # a line cut short by a kill: not a message
    return records


def _summary(stack: Stack, w: Watcher) -> tuple[str, list[str]]:
    catalog = load_catalog(stack.catalog_path)
    out = ["\n=== what happened ==="]
    rows = [(k[2], k[0], k[1], summary) for k, summary in sorted(w.board.fired.items())]
    out.append(table("Alerts fired", ("severity", "alert", "about", "summary"), rows))
    still = ", ".join(f"{k[0]} {k[1]}" for k in sorted(w.board.active)) or "none"
    out.append(f"still firing at the end: {still}")
    kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(w.messages.methods.items()))
    per_channel = ", ".join(f"{ch} {n}" for ch, n in sorted(w.messages.channels.items()))
    out.append(
        f"\nSlack: {sum(w.messages.methods.values())} calls ({kinds or 'none'}); "
        f"by channel: {per_channel or 'none'}"
    )
    causes, failures = root_cause_check(_records(stack.messages_path), ROOT_CAUSES)
    out.append(causes)
    try:
        samples = scrape(f"{stack.url('collector')}/metrics")
        out.append(summarize(samples, catalog, time.time()))
    except OSError as exc:
        out.append(f"(the collector did not answer: {exc})")
    out.append(_urls(stack))
    return "\n".join(out), failures


def run_against(airflow_db: str, workdir: str = ".demo-parts", catalog: str | None = None) -> int:
    """The stack without Airflow and without a story, reading an existing Airflow's DB."""
    work = Path(workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    processes = Processes(work / "logs")
    stack = Stack(work, processes, airflow_ui=False)
    with _sigterm_as_interrupt():
        try:
            shutil.copyfile(catalog or EXAMPLE_CATALOG, stack.catalog_path)
            config_dir = stack.write_rules()
            stack.start_collector(airflow_db)
            stack.start_router()
            stack.start_alertmanager(config_dir)
            stack.start_prometheus(config_dir)
            _say(_urls(stack))
            _say("watching; press Ctrl-C to stop")
            w = Watcher(stack, time.monotonic())
            while True:
                w.wait_until(time.monotonic() + 3600)
        except KeyboardInterrupt:
            return 0
        except (StartError, OSError) as exc:
            _say(f"cannot start: {exc}")
            return 1
        finally:
            processes.stop()


def run_quick(workdir: str = ".demo", serve_seconds: float = 0) -> int:
    """Real DAG runs on SQLite, read by an in-process collector; no servers, about a minute."""
    work = Path(workdir).resolve()
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    stack = Stack(work, Processes(work / "logs"), airflow_ui=False)
    home = stack.airflow_home()
    home.extra_env.pop("IMPACTWATCH_COLLECTOR_URL")  # no collector to send to
    _say(f"1/3  running the example fintech DAGs for real in Airflow ({home.home}) ...")
    started = time.monotonic()
    results = populate(home)
    for r in results:
        _say(f"       {r.dag_id:<26} {r.state}")
    _say(f"     {len(results)} runs in {time.monotonic() - started:.0f}s")

    settings = CollectorSettings(
        catalog=str(EXAMPLE_CATALOG),
        airflow_db=reader_db_url(home.db_url),
        state_db=f"sqlite:///{work / 'impactwatch-state.db'}",
        backfill_days=3,
    )
    _say("2/3  collector: reading Airflow's metadata DB ...")
    service = CollectorService(settings, load_catalog(EXAMPLE_CATALOG))
    while (result := service.poll_once()) is not None and not result.caught_up:
        pass
    if result is None:
        _say("     the collector could not read Airflow's database; see the log above")
        return 1
    app = collector_app(service, None, settings.max_body_bytes)
    server = Server(app, "127.0.0.1", 0, settings.server_limits(), name="impactwatch-collector")
    server.start()
    url = f"http://127.0.0.1:{server.port}/metrics"
    try:
        _say(f"3/3  what impactwatch measured (scraped from {url}):")
        _say(summarize(scrape(url), service.state.catalog, time.time()))
        if serve_seconds > 0:
            _say(f"\nserving {url} for {serve_seconds:.0f}s (Ctrl-C to stop)")
            deadline = time.monotonic() + serve_seconds
            while time.monotonic() < deadline:
                service.poll_once()
                time.sleep(min(settings.poll_interval, max(deadline - time.monotonic(), 0)))
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        service.close()
    return 0
