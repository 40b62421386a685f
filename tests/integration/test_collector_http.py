"""The collector's HTTP surface on a real socket: intake auth and limits, /metrics, promtool."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from impactwatch.collector.intake.parse import SCHEMA
from impactwatch.collector.service import CollectorService
from tests.integration.helpers import catch_up, make_service, registry, serving

pytestmark = pytest.mark.integration
TOKEN = "s3cret-intake-token"


@pytest.fixture
def collector(airflow_sqlite_url: str, tmp_path: Path) -> Iterator[tuple[CollectorService, str]]:
    service = make_service(airflow_sqlite_url, tmp_path)
    catch_up(service)
    try:
        with serving(service, TOKEN, max_body=4096) as base:
            yield service, base
    finally:
        service.close()


def call(url: str, body: bytes | None = None, token: str | None = TOKEN) -> tuple[int, dict | str]:
    request = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            status, raw = resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        status, raw = err.code, err.read().decode()
    try:
        return status, json.loads(raw)
    except json.JSONDecodeError:
        return status, raw


def events(*items: dict) -> bytes:
    return json.dumps({"schema": SCHEMA, "events": list(items)}).encode()


def test_intake_rejects_bad_requests_and_stores_nothing(
    collector: tuple[CollectorService, str],
) -> None:
    service, base = collector
    good = events({"type": "asset", "uri": "s3://x/y", "timestamp": 1795500000})
    assert call(f"{base}/v1/events", good, token=None)[0] == 401
    assert call(f"{base}/v1/events", good, token="wrong")[0] == 401
    status, body = call(f"{base}/v1/events", b"{oops")
    assert status == 400 and "not JSON" in body["error"]
    status, body = call(f"{base}/v1/events", events({"type": "task_try", "dag_id": "d"}))
    assert status == 400 and "events[0]" in body["error"]
    status, body = call(f"{base}/v1/events", b"x" * 5000)
    assert status == 413 and "4096" in body["error"]
    assert call(f"{base}/v1/events")[0] == 405
    assert call(f"{base}/nope")[0] == 404
    assert service.store.summary().asset_updates.get("s3://x/y") is None
    samples = registry(service)
    for reason, n in {"unauthorized": 2, "invalid": 2, "too_large": 1}.items():
        refused = {"source": "listener", "outcome": reason}
        assert samples.get_sample_value("impactwatch_collector_events_total", refused) == n
    status, text = call(f"{base}/metrics")
    assert 'impactwatch_collector_events_total{outcome="invalid",source="listener"} 2.0' in text


def test_a_wrong_token_alone_counts_as_unauthorized(
    collector: tuple[CollectorService, str],
) -> None:
    service, base = collector
    good = events({"type": "asset", "uri": "s3://x/y", "timestamp": 1795500000})
    refused = {"source": "listener", "outcome": "unauthorized"}
    before = registry(service).get_sample_value("impactwatch_collector_events_total", refused)
    assert call(f"{base}/v1/events", good, token="wrong")[0] == 401
    after = registry(service).get_sample_value("impactwatch_collector_events_total", refused)
    assert (before or 0) + 1 == after
    assert call(f"{base}/v1/events", good)[0] == 202  # the right token: stored, not rejected
    after_ok = registry(service).get_sample_value("impactwatch_collector_events_total", refused)
    assert after_ok == after


def test_listener_and_poller_events_count_once(collector: tuple[CollectorService, str]) -> None:
    service, base = collector
    with service.store.engine.connect() as conn:
        from sqlalchemy import select

        from impactwatch.collector.state.store import task_try_t

        row = conn.execute(
            select(task_try_t).where(task_try_t.c.task_id == "transform_ledger")
        ).one()
    same_try = {
        "type": "task_try",
        "dag_id": row.dag_id,
        "run_id": row.run_id,
        "task_id": row.task_id,
        "map_index": row.map_index,
        "try_number": row.try_number,
        "state": "success",
        "cpu_seconds": 0.4,
        "peak_rss_bytes": 50_000_000,
    }
    status, body = call(f"{base}/v1/events", events(same_try))
    assert status == 202 and body["outcomes"] == {"updated": 1}  # merged into the poller's try
    status, body = call(f"{base}/v1/events", events(same_try))
    assert body["outcomes"] == {"duplicate": 1}
    status, text = call(f"{base}/metrics")
    assert status == 200
    assert 'impactwatch_collector_events_total{outcome="updated",source="listener"} 1.0' in text
    assert (
        'impactwatch_dag_run_duration_seconds_count{dag_id="nightly_heavy_etl",state="success",'
        'team="platform"} 1.0' in text
    )


def test_metrics_pass_promtool_and_healthz(collector: tuple[CollectorService, str]) -> None:
    _service, base = collector
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: run `make test` (it apt-installs prometheus)"
    status, text = call(f"{base}/metrics")
    assert status == 200 and "impactwatch_dataset_last_updated_timestamp_seconds{" in text
    check = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert check.returncode == 0 and not check.stdout.strip() and not check.stderr.strip(), (
        check.stdout + check.stderr
    )
    status, health = call(f"{base}/healthz")
    assert status == 200 and health["status"] == "ok" and health["stale"] is False


# --- on the wire ------------------------------------------------------------------------------
def raw(port: int, data: bytes, *, expect_continue: bytes | None = None) -> bytes:
    """Send `data` on a fresh connection; the whole answer (the server closes after it)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        if expect_continue is not None:
            assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue")
            sock.sendall(expect_continue)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_expect_continue_is_honoured_and_head_has_no_body(
    collector: tuple[CollectorService, str],
) -> None:
    service, base = collector
    port = int(base.rsplit(":", 1)[1])
    body = events({"type": "asset", "uri": "s3://x/continue", "timestamp": 1795500000})
    head = (
        f"POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
        f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"
    ).encode()
    answer = raw(port, head, expect_continue=body)
    assert answer.startswith(b"HTTP/1.1 202 Accepted\r\n")
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1]) == {"accepted": 1, "outcomes": {"new": 1}}
    answer = raw(port, b"HEAD /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"\r\n\r\n")  # no body
    assert "s3://x/continue" in service.store.summary().asset_updates


def test_without_a_token_the_intake_is_closed(airflow_sqlite_url: str, tmp_path: Path) -> None:
    service = make_service(airflow_sqlite_url, tmp_path)
    try:
        with serving(service, None, max_body=4096) as base:
            good = events({"type": "asset", "uri": "s3://x/y", "timestamp": 1795500000})
            for token in (None, "anything"):
                status, body = call(f"{base}/v1/events", good, token=token)
                assert status == 401 and "intake closed" in body["error"]
            assert call(f"{base}/metrics")[0] == 200  # reading stays open
    finally:
        service.close()
