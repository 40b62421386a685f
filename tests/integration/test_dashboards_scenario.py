"""The morning the dashboard proof plays: Airflow's scheduler on a private copy of the populated
metadata DB (SQL, as Airflow would have written it), the listener's events, Alertmanager's
notifications, and a Slack that refuses every call. Used by `test_dashboards_prometheus`; the
tests here check the pieces on their own (cheap, no servers).
"""

from __future__ import annotations

import json
import sqlite3
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from impactwatch.collector.intake.parse import SCHEMA, parse_events
from impactwatch.router.payload import parse_notification

pytestmark = pytest.mark.integration
HOUR = 3600.0


# -- the Airflow scheduler, played on a private copy of the populated DB -----------------------
def private_copy(airflow_sqlite_url: str, path: Path) -> sqlite3.Connection:
    """A copy of the shared populated DB (read, never written) that this morning can change."""
    target = sqlite3.connect(path)
    with sqlite3.connect(airflow_sqlite_url.removeprefix("sqlite:///")) as source:
        source.backup(target)
    return target


def _text(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def _move(db: sqlite3.Connection, table: str, where: str, *params: Any, by: float) -> None:
    """Move every time of the matching rows `by` seconds, as if Airflow wrote them then."""
    columns = [r[1] for r in db.execute(f"PRAGMA table_info({table})") if r[2] == "TIMESTAMP"]
    for row in db.execute(f"SELECT rowid, * FROM {table} WHERE {where}", params).fetchall():
        names = ["rowid", *(r[1] for r in db.execute(f"PRAGMA table_info({table})"))]
        values = dict(zip(names, row, strict=True))
        moved = {c: _text(_epoch(values[c]) + by) for c in columns if values[c]}
        sets = ", ".join(f"{c} = ?" for c in moved)
        db.execute(f"UPDATE {table} SET {sets} WHERE rowid = ?", [*moved.values(), row[0]])


def _copy_row(db: sqlite3.Connection, table: str, where: str, *params: Any, **values: Any) -> None:
    """Insert a copy of one row with `values` changed (and a new `id` when the table has one)."""
    db.row_factory = sqlite3.Row
    source = dict(db.execute(f"SELECT * FROM {table} WHERE {where}", params).fetchone())
    db.row_factory = None
    if table == "dag_run":
        del source["id"]  # autoincrement: the poller finds new runs by a higher id
    row = {**source, **values}
    marks = ", ".join("?" for _ in row)
    db.execute(f"INSERT INTO {table} ({', '.join(row)}) VALUES ({marks})", list(row.values()))


def age_the_morning(db: sqlite3.Connection, now: float) -> None:
    """Market prices 5 h old (limit 2 h, critical: stale), FX rates 3 h (limit 2 h: late),
    payments reconciled 50 h ago (limit 26 h: late; its 09:00 deadline missed). Tasks waited
    in their pool's queue; the scheduler is alive; one DAG file fails to parse."""
    _move(db, "asset_event", "source_dag_id = 'market_data_ingest'", by=-5 * HOUR)
    _move(db, "task_instance", "task_id = 'fetch_fx_rates'", by=-3 * HOUR)
    _move(db, "dag_run", "dag_id = 'payments_reconciliation'", by=-50 * HOUR)
    _move(db, "task_instance", "dag_id = 'payments_reconciliation'", by=-50 * HOUR)
    for ti_id, start, pool in db.execute("SELECT id, start_date, pool FROM task_instance"):
        wait = 40.0 if pool == "heavy_etl" else 2.0
        db.execute(
            "UPDATE task_instance SET queued_dttm = ? WHERE id = ?",
            (_text(_epoch(start) - wait), ti_id),
        )
    db.execute(
        "INSERT INTO job (dag_id, state, job_type, start_date, latest_heartbeat, hostname) "
        "VALUES (NULL, 'running', 'SchedulerJob', ?, ?, 'scheduler-0')",
        (_text(now - HOUR), _text(now - 5)),
    )
    db.execute(
        "INSERT INTO import_error (timestamp, filename, bundle_name, stacktrace) "
        "VALUES (?, 'broken_dag.py', 'dags-folder', 'SyntaxError: invalid syntax')",
        (_text(now),),
    )


def schedule_more(db: sqlite3.Connection, now: float) -> None:
    """A new scheduled run of the nightly ETL that queued in its pool and finished, and a risk
    scoring run in flight for 25 minutes (its limit is 20)."""
    run_id = "scheduled__dashboards_phase2"
    where = "dag_id = 'nightly_heavy_etl'"
    start = now - 90
    _copy_row(
        db,
        "dag_run",
        where,
        run_id=run_id,
        run_after=_text(now - 100),
        logical_date=_text(now - 100),
        queued_at=_text(now - 95),
        start_date=_text(start),
        end_date=_text(now - 10),
    )
    tasks = db.execute(f"SELECT task_id, pool FROM task_instance WHERE {where}").fetchall()
    for i, (task_id, pool) in enumerate(tasks):
        began = start + 5 + 10 * i
        _copy_row(
            db,
            "task_instance",
            f"{where} AND task_id = ?",
            task_id,
            id=uuid.uuid4().hex,
            run_id=run_id,
            state="success",
            queued_dttm=_text(began - (30 if pool == "heavy_etl" else 3)),
            start_date=_text(began),
            end_date=_text(began + 8),
            duration=8.0,
        )
    _copy_row(
        db,
        "dag_run",
        "dag_id = 'risk_scoring'",
        run_id="manual__dashboards_in_flight",
        state="running",
        queued_at=_text(now - 1500),
        start_date=_text(now - 1500),
        end_date=None,
    )


# -- the listener and Alertmanager, played over HTTP ----------------------------------------------
def post(url: str, body: dict[str, Any] | bytes, token: str | None = None) -> int:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST")
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code


def long_morning_run(run_id: str, now: float) -> dict[str, Any]:
    """A morning_reporting run that took 74 minutes (limit 30: past twice, critical)."""
    start, end = now - 75 * 60, now - 60
    tries = [
        {
            "type": "task_try",
            "dag_id": "morning_reporting",
            "run_id": run_id,
            "task_id": task,
            "try_number": 1,
            "state": "success",
            "start_date": start + 60 * i,
            "end_date": end - 60 * (2 - i),
            "pool": "default_pool",
            "cpu_seconds": 900.0,
            "peak_rss_bytes": 2_000_000_000,
        }
        for i, task in enumerate(("extract_kpis", "build_report", "email_executives"))
    ]
    run = {
        "type": "dag_run",
        "dag_id": "morning_reporting",
        "run_id": run_id,
        "state": "success",
        "run_type": "scheduled",
        "run_after": start - 120,
        "queued_at": start - 30,
        "start_date": start,
        "end_date": end,
    }
    return {"schema": SCHEMA, "events": [*tries, run]}


def notification(alertname: str, **labels: str) -> dict[str, Any]:
    alert = {"alertname": alertname, **labels}
    return {
        "version": "4",
        "status": "firing",
        "receiver": "impactwatch",
        "groupKey": json.dumps(alert),
        "alerts": [{"status": "firing", "labels": alert, "annotations": {"summary": alertname}}],
    }


class SlackRefuses(BaseHTTPRequestHandler):
    """Slack's Web API answering every call with an error, as for a channel the bot is not in."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps({"ok": False, "error": "channel_not_found"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


# -- the pieces, checked on their own --------------------------------------------------------
def test_moved_rows_keep_airflows_time_format() -> None:
    db = sqlite3.connect(":memory:")
    db.execute(
        "CREATE TABLE dag_run (dag_id VARCHAR(250), start_date TIMESTAMP, end_date TIMESTAMP)"
    )
    db.execute("INSERT INTO dag_run VALUES ('a', '2026-11-24 15:43:37.600262', NULL)")
    _move(db, "dag_run", "dag_id = ?", "a", by=-50 * HOUR)
    assert db.execute("SELECT * FROM dag_run").fetchone() == (
        "a",
        "2026-11-22 13:43:37.600262",
        None,
    )


def test_listener_and_alertmanager_payloads_parse_at_the_edges() -> None:
    batch = parse_events(json.dumps(long_morning_run("r", 1_795_500_000.0)).encode())
    assert len(batch.task_tries) == 3 and len(batch.dag_runs) == 1
    assert batch.dag_runs[0].end - batch.dag_runs[0].start == 74 * 60
    body = json.dumps(notification("DataProductStale", team="markets")).encode()
    (alert,) = parse_notification(body, 1_795_500_000.0).alerts
    assert alert.labels == {"alertname": "DataProductStale", "team": "markets"}
