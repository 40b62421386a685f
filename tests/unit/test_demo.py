"""The demo's pure parts and its process handling: catalog, story, alert board, message log."""

from __future__ import annotations

import json
import os
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from impactwatch.catalog.loader import load_catalog
from impactwatch.demo.processes import Processes, StartError
from impactwatch.demo.report import root_cause_check
from impactwatch.demo.scenario import FRESHNESS, TIERS, RootCause, demo_catalog, story
from impactwatch.demo.stack import EXAMPLE_CATALOG
from impactwatch.demo.watch import AlertBoard, MessageLog, alert_key, worth_showing


def test_the_demo_catalog_is_a_valid_catalog_with_the_story_limits(tmp_path: Path) -> None:
    example = yaml.safe_load(EXAMPLE_CATALOG.read_text())
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(demo_catalog(example), sort_keys=False))
    catalog = load_catalog(path)
    for name, seconds in FRESHNESS.items():
        assert catalog.datasets[name].freshness == seconds
    for name, tier in TIERS.items():
        assert catalog.datasets[name].tier == tier
    # an hour of the example's prices is a second of the story's
    assert catalog.cost.rates.cpu_hour == Decimal("149.76")  # 3600 x 0.0416
    # the example itself is untouched
    assert example["datasets"]["market_data"]["freshness"] == "2h"


def test_the_story_runs_in_order_and_its_clock_scales() -> None:
    steps = story()
    assert [s.at for s in steps] == sorted(s.at for s in steps)
    assert steps[0].at == 0 and all(s.runs for s in steps)
    failing = [r for s in steps for r in s.runs if r.expect == "failed"]
    assert [r.dag_id for r in failing] == ["market_data_ingest"]
    assert [s.at for s in story(0.5)] == [s.at / 2 for s in steps]


def test_the_alert_board_reports_what_fired_and_what_resolved() -> None:
    board = AlertBoard()
    warn = alert_key({"alertname": "DataProductStale", "dataset": "m", "severity": "warning"})
    crit = alert_key({"alertname": "DataProductStale", "dataset": "m", "severity": "critical"})
    assert board.update({warn: "Market prices are 1m stale"}) == [
        "alert  FIRING   warning  DataProductStale: Market prices are 1m stale"
    ]
    assert board.update({warn: "Market prices are 1m stale"}) == []
    lines = board.update({crit: "Market prices are 2m stale"})
    assert lines[0].startswith("alert  FIRING   critical") and "resolved warning" in lines[1]
    assert board.update({}) == ["alert  resolved critical DataProductStale: m"]
    assert set(board.fired) == {warn, crit} and not board.active


def test_the_message_log_reads_whole_lines_only(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    messages = MessageLog(path)
    assert messages.new() == []
    post = {"method": "chat.postMessage", "channel": "#a", "text": "x"}
    reply = {"method": "chat.postMessage", "channel": "#a", "text": "y", "thread_ts": "1.2"}
    update = {"method": "chat.update", "channel": "#a", "text": "z"}
    with path.open("w") as fh:
        fh.write(json.dumps(post) + "\n" + json.dumps(reply)[:10])  # a line being written
    assert [r["text"] for r in messages.new()] == ["x"]
    with path.open("a") as fh:
        fh.write(json.dumps(reply)[10:] + "\n" + json.dumps(update) + "\n")
    got = messages.new()
    assert [r["text"] for r in got] == ["y", "z"]
    assert [worth_showing(r) for r in got] == [True, False]
    assert messages.methods == {"new message": 1, "thread reply": 1, "message updated": 1}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead too
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def test_stop_ends_children_and_what_they_forked(tmp_path: Path) -> None:
    processes = Processes(tmp_path / "logs")
    pidfile = tmp_path / "grandchild.pid"
    # a child that ignores SIGTERM and forks a grandchild, as a task runner does
    code = (
        "import os, signal, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    time.sleep(600)\n"
        f"open({str(pidfile)!r}, 'w').write(str(pid))\n"
        "time.sleep(600)\n"
    )
    child = processes.start("stubborn", [sys.executable, "-c", code])
    deadline = time.monotonic() + 10
    while not (pidfile.exists() and pidfile.read_text()):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    grandchild = int(pidfile.read_text())
    started = time.monotonic()
    processes.stop(grace=0.5)
    assert time.monotonic() - started < 10
    gone = time.monotonic() + 2  # SIGKILL is sent; the kernel ends the process a moment later
    while (_alive(child.proc.pid) or _alive(grandchild)) and time.monotonic() < gone:
        time.sleep(0.02)
    assert not _alive(child.proc.pid) and not _alive(grandchild)
    assert processes.children == []


def test_a_child_that_dies_at_start_is_reported_with_its_log(tmp_path: Path) -> None:
    processes = Processes(tmp_path / "logs")
    argv = [sys.executable, "-c", "import sys; print('bad config line 3'); sys.exit(3)"]
    with pytest.raises(StartError, match=r"exited with 3(.|\n)*bad config line 3"):
        processes.start("broken", argv, ready_url="http://127.0.0.1:9/")
    processes.stop()


def test_a_missing_program_is_a_start_error(tmp_path: Path) -> None:
    with pytest.raises(StartError, match="cannot start nothing"):
        Processes(tmp_path).start("nothing", [str(tmp_path / "no-such-program")])


def _post(key: str, channel: str, text: str, thread: str | None = None) -> dict:
    return {"method": "chat.postMessage", "key": key, "channel": channel, "text": text,
            "thread_ts": thread}  # fmt: skip


def test_the_story_check_counts_top_level_messages_per_root_cause() -> None:
    causes = (RootCause("outage", ("market_data_ingest", "Market prices"), 3),)
    head = "Pipeline `market_data_ingest` — pipeline run failed"
    records = [
        _post("i1:primary", "#markets-data", f"Critical: {head}"),
        _post("i1:primary", "#markets-data", "Now also out of date: Market prices.", "1.1"),
        {"method": "chat.update", "key": "", "channel": "#markets-data", "text": "x"},
        _post("i1:affected:risk", "#risk-alerts", f"Affected by an upstream problem: {head}"),
        _post("i1:escalation:0", "#data-incidents", f"Escalation 1: Critical: {head}"),
    ]
    text, failures = root_cause_check(records, causes)
    assert failures == [] and "3 (at most 3)" in text
    # A second incident for the same root cause, and one message too many: both reported.
    records.append(_post("i2:primary", "#markets-data", "Warning: Market prices — out of date"))
    text, failures = root_cause_check(records, causes)
    assert failures == [
        "outage: 2 incident(s), 4 top-level message(s); expected 1 incident and at most 3"
    ]
    records.append(_post("i3:primary", "#data-platform", "Warning: Pipeline other — slow"))
    text, _ = root_cause_check(records, causes)
    assert "other: Pipeline other — slow" in text
