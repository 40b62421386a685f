"""Faults with real servers: Airflow's DB down at start and mid-run; a collector restart under
a real Prometheus."""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from impactwatch.collector.airflow.db import make_airflow_engine
from impactwatch.collector.intake.parse import SCHEMA
from tests.integration.helpers import catch_up, copy_of, make_service, registry, serving, sql
from tests.support.prometheus import Prometheus
from tests.support.tcpproxy import TcpProxy, _free_port

pytestmark = pytest.mark.integration
RUN_COUNT = "impactwatch_dag_run_duration_seconds_count"
TOKEN = "faults-intake-token"


def add_finished_run(url: str, dag_id: str, run_id: str) -> None:
    """What the scheduler writes for a run that ran while the collector could not look."""
    sql(
        url,
        "INSERT INTO dag_run (dag_id, run_id, run_type, state, run_after, queued_at, start_date,"
        " end_date, clear_number, span_status) VALUES (%s, %s, 'manual', 'success', now(),"
        " now() - interval '2 minutes', now() - interval '1 minute', now(), 0, 'not_started')",
        dag_id,
        run_id,
    )
    sql(
        url,
        "INSERT INTO task_instance (id, task_id, dag_id, run_id, map_index, try_number, max_tries,"
        " pool, pool_slots, span_status, state, start_date, end_date, duration, queued_dttm)"
        " SELECT gen_random_uuid(), task_id, dag_id, %s, map_index, 1, 0, pool, pool_slots,"
        " 'not_started', 'success', now() - interval '50 seconds', now(), 50,"
        " now() - interval '55 seconds' FROM task_instance WHERE dag_id = %s"
        " AND run_id = (SELECT min(run_id) FROM dag_run WHERE dag_id = %s AND run_id <> %s)",
        run_id,
        dag_id,
        dag_id,
        run_id,
    )


def test_database_down_at_start_and_mid_run(
    pg_base_url: str, airflow_pg_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with copy_of(pg_base_url, airflow_pg_url) as url:
        real = make_url(url)
        proxy = TcpProxy(real.host or "127.0.0.1", real.port or 5432)
        proxied = real.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        service = make_service(proxied, tmp_path)
        labels = {"dag_id": "morning_reporting", "team": "reporting", "state": "success"}
        try:
            caplog.set_level(logging.WARNING, logger="impactwatch")
            for _ in range(3):  # down at start: cycles fail, nothing crashes
                assert service.poll_once() is None
            assert registry(service).get_sample_value("impactwatch_collector_stale") == 1
            assert (
                registry(service).get_sample_value(
                    "impactwatch_collector_db_errors_total", {"db": "airflow"}
                )
                == 3
            )
            warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
            assert len(warnings) == 1, "one log line per failure streak"
            proxy.up()
            catch_up(service)
            assert registry(service).get_sample_value(RUN_COUNT, labels) == 1
            assert registry(service).get_sample_value("impactwatch_collector_stale") == 0
            proxy.down()  # mid-run: a run finishes while the collector cannot see it
            assert service.poll_once() is None
            add_finished_run(url, "morning_reporting", "manual__during_outage")
            assert registry(service).get_sample_value(RUN_COUNT, labels) == 1  # last state served
            proxy.up()
            catch_up(service)
            assert registry(service).get_sample_value(RUN_COUNT, labels) == 2  # nothing missed
            catch_up(service)
            assert registry(service).get_sample_value(RUN_COUNT, labels) == 2  # nor doubled
        finally:
            proxy.down()
            service.close()


def _post_run(base: str, run_id: str) -> None:
    now = time.time()
    event = {
        "type": "dag_run",
        "dag_id": "morning_reporting",
        "run_id": run_id,
        "state": "success",
        "run_type": "manual",
        "start_date": now - 30,
        "end_date": now,
    }
    body = json.dumps({"schema": SCHEMA, "events": [event]}).encode()
    request = urllib.request.Request(
        f"{base}/v1/events", data=body, method="POST", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert resp.status == 202


def _wait_scrapes(prom: Prometheus, n: int) -> None:
    """Wait until Prometheus has scraped the current collector `n` more times."""
    deadline = time.monotonic() + 30
    seen = 0
    while time.monotonic() < deadline and seen < n:
        time.sleep(1.1)
        up = prom.value('up{job="impactwatch"}')
        seen += 1 if up == 1 else 0
    assert seen >= n, "prometheus did not scrape the collector"


def test_restart_shows_no_spike_in_increase(airflow_sqlite_url: str, tmp_path: Path) -> None:
    port = _free_port()
    prom = Prometheus([f"127.0.0.1:{port}"])
    total = f"sum(increase({RUN_COUNT}[{{w}}s]))"
    try:

        def start(state_dir: Path):  # type: ignore[no-untyped-def]
            service = make_service(airflow_sqlite_url, state_dir)
            catch_up(service)
            server = serving(service, TOKEN, port=port)
            server.__enter__()
            return service, server

        service, server = start(tmp_path)
        _wait_scrapes(prom, 3)
        for i in range(2):
            _post_run(f"http://127.0.0.1:{port}", f"manual__before_restart_{i}")
        _wait_scrapes(prom, 3)
        before = prom.value(f'{RUN_COUNT}{{dag_id="morning_reporting",state="success"}}')
        assert before == 3
        t1 = time.time()
        server.__exit__(None, None, None)
        service.close()
        service, server = start(tmp_path)  # same state DB: a plain restart
        _wait_scrapes(prom, 5)
        window = int(time.time() - t1) + 3  # A's last samples, the restart, B's samples
        assert (prom.value(total.format(w=window)) or 0) == 0, "a restart is not new runs"
        server.__exit__(None, None, None)
        service.close()
        # control: losing the state DB re-reads history and Prometheus sees it (the test bites)
        (tmp_path / "fresh").mkdir()
        service, server = start(tmp_path / "fresh")
        _wait_scrapes(prom, 5)
        window = int(time.time() - t1) + 3
        assert (prom.value(total.format(w=window)) or 0) >= 1
        server.__exit__(None, None, None)
        service.close()
    finally:
        prom.stop()


def test_a_black_holed_connection_does_not_hang_the_collector(
    pg_base_url: str, airflow_pg_url: str, tmp_path: Path
) -> None:
    real = make_url(airflow_pg_url)
    proxy = TcpProxy(real.host or "127.0.0.1", real.port or 5432).up()
    proxied = real.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    service = make_service(proxied, tmp_path, cycle_timeout=3.0)
    try:
        catch_up(service)
        proxy.stalled.set()  # connections stay open, nothing comes back
        started = time.monotonic()
        assert service.poll_once() is None
        assert time.monotonic() - started < 6
        assert registry(service).get_sample_value("impactwatch_collector_stale") == 1
        proxy.stalled.clear()
        catch_up(service)
        assert registry(service).get_sample_value("impactwatch_collector_stale") == 0
    finally:
        proxy.down()
        service.close()


def _health_and_stale(base: str) -> tuple[int, dict[str, Any], str | None]:
    """(/healthz status, its body, the `impactwatch_collector_stale` line of /metrics)."""
    try:
        with urllib.request.urlopen(f"{base}/healthz", timeout=5) as resp:
            status, body = resp.status, json.load(resp)
    except urllib.error.HTTPError as exc:
        status, body = exc.code, json.load(exc)
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    stale = next(
        (ln for ln in text.splitlines() if ln.startswith("impactwatch_collector_stale ")), None
    )
    return status, body, stale


def _until(check: Any, limit: float) -> float:
    """Seconds until `check()` is true, polled every 0.1 s; fails after `limit`."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < limit, f"not within {limit:.0f}s"
        time.sleep(0.1)
    return time.monotonic() - started


def test_a_silent_airflow_db_is_stale_within_two_poll_intervals_and_recovers(
    pg_base_url: str, airflow_pg_url: str, tmp_path: Path
) -> None:
    """The running collector (its own loop, default cycle_timeout of 60 s) behind a proxy that
    keeps the connections open and forwards nothing: /metrics and /healthz say so in time."""
    interval = 2.0
    real = make_url(airflow_pg_url)
    proxy = TcpProxy(real.host or "127.0.0.1", real.port or 5432).up()
    proxied = real.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    service = make_service(proxied, tmp_path, poll_interval=interval)
    assert service.settings.cycle_timeout == 60
    loop = threading.Thread(target=service.run, daemon=True)
    try:
        catch_up(service)
        with serving(service, TOKEN) as base:
            loop.start()
            _until(lambda: _health_and_stale(base)[0] == 200, 10)
            assert _health_and_stale(base)[2] == "impactwatch_collector_stale 0.0"
            proxy.stalled.set()
            took = _until(lambda: _health_and_stale(base)[0] == 503, 3 * interval)
            assert took <= 2 * interval + 0.5, f"stale after {took:.1f}s"
            _, body, stale = _health_and_stale(base)
            assert stale == "impactwatch_collector_stale 1.0"
            assert body["status"] == "stale" and body["stale"] is True
            assert body["reason"] == "Airflow's DB: a poll cycle running for over 2s"
            proxy.stalled.clear()  # it answers again: the same cycle ends, the next ones run
            _until(lambda: _health_and_stale(base)[0] == 200, 3 * interval)
            _, body, stale = _health_and_stale(base)
            assert stale == "impactwatch_collector_stale 0.0"
            assert (body["status"], body["stale"], "reason" in body) == ("ok", False, False)
    finally:
        service.stop()
        loop.join(10)
        proxy.down()
        service.close()


def test_a_failed_cycle_makes_healthz_unhealthy_with_the_error(
    pg_base_url: str, airflow_pg_url: str, tmp_path: Path
) -> None:
    real = make_url(airflow_pg_url)
    proxy = TcpProxy(real.host or "127.0.0.1", real.port or 5432)  # down: connections refused
    proxied = real.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    service = make_service(proxied, tmp_path)
    try:
        with serving(service, TOKEN) as base:
            assert _health_and_stale(base)[0] == 200  # not polled yet: nothing known wrong
            assert service.poll_once() is None
            status, body, stale = _health_and_stale(base)
            assert (status, body["status"], stale) == (
                503,
                "stale",
                "impactwatch_collector_stale 1.0",
            )
            assert body["reason"].startswith("airflow DB: OperationalError: ")
            assert "@" not in body["reason"]  # no URL, no password
            proxy.up()
            catch_up(service)
            assert _health_and_stale(base)[0] == 200
    finally:
        proxy.down()
        service.close()


def test_airflow_db_connections_fail_when_the_peer_goes_silent(pg_base_url: str) -> None:
    """libpq applied the keepalive and user-timeout options to the real socket."""
    engine = make_airflow_engine(f"{pg_base_url}/postgres", dead_after=10.0)
    try:
        with engine.connect() as conn:
            fd = conn.connection.dbapi_connection.pgconn.socket  # type: ignore[union-attr]
            sock = socket.socket(fileno=os.dup(fd))
            try:
                options = {
                    "SO_KEEPALIVE": sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
                    "TCP_KEEPIDLE": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
                    "TCP_KEEPINTVL": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
                    "TCP_KEEPCNT": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
                    "TCP_USER_TIMEOUT": sock.getsockopt(
                        socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT
                    ),
                }
            finally:
                sock.close()
    finally:
        engine.dispose()
    assert options == {
        "SO_KEEPALIVE": 1,
        "TCP_KEEPIDLE": 5,
        "TCP_KEEPINTVL": 1,
        "TCP_KEEPCNT": 3,
        "TCP_USER_TIMEOUT": 10_000,
    }
