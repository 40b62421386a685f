"""The router's HTTP edge under hostile clients, over real sockets: unsigned Slack bodies share
one byte budget (no memory growth however many connections), slow clients are cut off, a body
shorter than its Content-Length is never taken, and the webhook never loses a notification
for what is inside its labels (real PostgreSQL, whose text types refuse NUL bytes and long
values)."""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from impactwatch.router.http_app import create_app
from impactwatch.router.service import RouterService
from impactwatch.router.settings import RouterSettings
from impactwatch.router.sinks import ConsoleSink
from impactwatch.router.tables import alert_t
from impactwatch.serving import Server
from tests.support.postgres import create_database, drop_database
from tests.support.tcpproxy import TcpProxy
from tests.unit.test_router_http import SECRET, TOKEN, press, signed
from tests.unit.test_router_support import alert, body, catalog

pytestmark = pytest.mark.integration
BODY = 60_000


@dataclass
class Router:
    service: RouterService
    port: int
    messages: Path

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)

    def metrics(self) -> dict[str, float]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", "/metrics")
            text = conn.getresponse().read().decode()
        finally:
            conn.close()
        return {
            line.rpartition(" ")[0]: float(line.rpartition(" ")[2])
            for line in text.splitlines()
            if line and not line.startswith("#")
        }

    def post(self, path: str, data: bytes, **headers: str) -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("POST", path, data, headers)
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read() or b"null")
        finally:
            conn.close()


def serve(state_db: str, folder: Path, **settings: Any) -> Iterator[Router]:
    config = RouterSettings(
        state_db=state_db, settle_seconds=0, slack_signing_secret=SECRET, **settings
    )
    messages = folder / "messages.jsonl"
    service = RouterService(config, catalog(), sink=ConsoleSink(messages, io.StringIO()))
    server = Server(create_app(service, TOKEN), "127.0.0.1", 0, config.server_limits(), name="r")
    server.start()
    service.start()
    try:
        yield Router(service, server.port, messages)
    finally:
        server.stop()
        service.close()


@pytest.fixture
def router(tmp_path: Path) -> Iterator[Router]:
    yield from serve(
        f"sqlite:///{tmp_path / 'r.db'}",
        tmp_path,
        interactions_inflight_bytes=4 * 65536,
        request_timeout=2,
        header_timeout=1,
    )


def unsigned_head(length: int) -> bytes:
    """Slack's headers, well formed and fresh, with a made-up signature: passes every check
    that can be made before the body is read."""
    return (
        f"POST /slack/interactions HTTP/1.1\r\nHost: r\r\nContent-Length: {length}\r\n"
        f"X-Slack-Request-Timestamp: {int(time.time())}\r\nX-Slack-Signature: v0={'0' * 64}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n\r\n"
    ).encode()


def answer_of(sock: socket.socket) -> bytes:
    sock.settimeout(10)
    out = b""
    while chunk := sock.recv(65536):
        out += chunk
    return out


def test_unsigned_slack_bodies_share_one_budget_however_many_connections(router: Router) -> None:
    """Each connection sends all but the last byte of a 60 KB body and stalls: only what fits
    in the budget (4 x 64 KiB) is received; the others are refused from their head (503),
    before their body is buffered."""
    held, refused = [], 0
    for _ in range(40):
        sock = router.connect()
        sock.sendall(unsigned_head(BODY) + b"x" * (BODY - 1))
        held.append(sock)
    time.sleep(0.5)
    for sock in held:
        sock.settimeout(0.2)
        try:
            first = sock.recv(64)
        except TimeoutError:
            continue  # still being received: within the budget
        refused += first.startswith(b"HTTP/1.1 503 ")
    assert refused == 40 - 4
    assert (
        router.metrics()['impactwatch_router_interactions_total{action="unknown",outcome="busy"}']
        == 36
    )
    # The stalled ones are cut at request_timeout (408), which frees the budget.
    for sock in held:
        sock.settimeout(5)
        with sock, contextlib.suppress(ConnectionResetError, TimeoutError):
            answer_of(sock)
    time.sleep(0.3)
    data = press("iw_link_runbook", "")
    status, _ = router.post(
        "/slack/interactions",
        data,
        **{k.replace("_", "-"): v for k, v in signed(data).items()},
        **{"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert status == 200


@pytest.mark.parametrize("where", ["head", "body"])
def test_a_slow_client_is_cut_off(router: Router, where: str) -> None:
    if where == "body":  # the head at once, then the body a byte at a time
        first, trickle = unsigned_head(100), b"x" * 100
    else:
        head = b"POST /alertmanager HTTP/1.1\r\nHost: r\r\nX-Padding: " + b"p" * 100
        first, trickle = head[:20], head[20:]
    began = time.monotonic()
    with router.connect() as sock:
        sock.sendall(first)
        for byte in trickle:  # one byte every 0.1 s: never idle for long
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(0.1)
            if time.monotonic() - began > 6:
                break
        answer = answer_of(sock)
    took = time.monotonic() - began
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:80]
    limit = 1 if where == "head" else 2  # header_timeout, request_timeout
    assert limit <= took < limit + 1.5


def test_a_slack_body_shorter_than_its_length_is_never_taken(router: Router) -> None:
    data = press("iw_link_runbook", "")
    headers = "".join(f"{k.replace('_', '-')}: {v}\r\n" for k, v in signed(data).items())
    head = (
        f"POST /slack/interactions HTTP/1.1\r\nHost: r\r\nContent-Length: {len(data)}\r\n"
        f"{headers}Connection: close\r\n\r\n"
    ).encode()
    with router.connect() as sock:
        sock.sendall(head + data[:-5])
        sock.shutdown(socket.SHUT_WR)
        answer_of(sock)
    key = 'impactwatch_router_interactions_total{action="unknown",outcome="invalid"}'
    deadline = time.monotonic() + 5
    while router.metrics().get(key, 0) < 1:
        assert time.monotonic() < deadline, "the cut body was not counted"
        time.sleep(0.05)
    assert (
        router.metrics().get('impactwatch_router_interactions_total{action="link",outcome="ok"}', 0)
        == 0
    )


@pytest.fixture
def pg_router(pg_base_url: str, tmp_path: Path) -> Iterator[Router]:
    name = f"impactwatch_router_hostile_{uuid.uuid4().hex[:8]}"
    url = create_database(pg_base_url, name).replace("postgresql://", "postgresql+psycopg://")
    try:
        yield from serve(url, tmp_path)
    finally:
        drop_database(pg_base_url, name)


def test_no_notification_is_lost_for_what_its_labels_hold(pg_router: Router) -> None:
    """On PostgreSQL: a label longer than its column, a NUL byte, a long kind, a 20,000-
    character label, a start in year 9999 with a negative offset. Each is stored (200), shown
    safely, counted; before, each was a 503 forever or a 400 that dropped the notification."""
    year_9999 = alert(dataset="customer_risk_scores", team="risk", severity="critical")
    year_9999["startsAt"] = "9999-12-31T23:00:00-05:00"
    hostile = [
        alert(name="A" * 400, dataset="market_data", team="markets"),
        alert(name="Nul\x00Byte", dag_id="risk_scoring", team="risk"),
        alert(kind="k" * 60, dataset="regulatory_submission", team="compliance"),
        alert(
            dataset="daily_kpi_report", team="reporting", severity="critical", extra="x" * 20_000
        ),
        year_9999,
    ]
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for one in hostile:
        status, reply = pg_router.post("/alertmanager", body([one]), **auth)
        assert status == 200 and reply["alerts"] == {"new": 1}, reply
    with pg_router.service.store.read() as conn:
        names = sorted(conn.execute(select(alert_t.c.alertname)))
    assert len(names) == 5
    assert any(n[0].startswith("A" * 150) and "(400 chars, #" in n[0] for n in names)
    assert ("Nul\ufffdByte",) in names
    pg_router.service.worker.drain(20)
    sent = [json.loads(line) for line in pg_router.messages.read_text().splitlines()]
    # Customer risk scores is downstream of Market prices: it shows in that incident's message
    # and in the risk team's "affected" one, each with its start out of range.
    risk = [m for m in sent if m["channel"] == "#risk-alerts"]
    assert risk and "(date out of range)" in json.dumps(risk[-1]["blocks"])
    m = pg_router.metrics()
    assert m['impactwatch_router_notifications_total{outcome="accepted"}'] == 5
    assert 'impactwatch_router_notifications_total{outcome="failed"}' not in m
    adjusted = "impactwatch_router_values_adjusted_total"
    assert m[f'{adjusted}{{field="label",reason="too_long"}}'] == 3
    assert m[f'{adjusted}{{field="label",reason="control_character"}}'] == 1
    assert m[f'{adjusted}{{field="time",reason="out_of_range"}}'] == 1
    assert m["impactwatch_router_outbox_depth"] == 0  # every message went out


def test_a_state_db_that_goes_away_is_a_503_counted_with_its_reason(
    pg_base_url: str, tmp_path: Path
) -> None:
    """The webhook's write fails (the DB's connections cut): 503 so Alertmanager retries, and
    the failure is in /metrics with its reason; once the DB is back, the same body is taken."""
    name = f"impactwatch_router_down_{uuid.uuid4().hex[:8]}"
    url = create_database(pg_base_url, name).replace("postgresql://", "postgresql+psycopg://")
    parts = urlsplit(url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432).up()
    via_proxy = url.replace(f"{parts.hostname}:{parts.port or 5432}", f"127.0.0.1:{proxy.port}")
    try:
        for router in serve(via_proxy, tmp_path):
            auth = {"Authorization": f"Bearer {TOKEN}"}
            data = body([alert(dataset="market_data", team="markets")])
            proxy.down()
            status, reply = router.post("/alertmanager", data, **auth)
            assert status == 503 and "Alertmanager will retry" in reply["error"]
            m = router.metrics()
            failures = "impactwatch_router_store_failures_total"
            assert m[f'{failures}{{operation="notification",reason="unavailable"}}'] == 1
            proxy.up()
            for _ in range(3):  # the first statement after the cut may find a dead connection
                status, _reply = router.post("/alertmanager", data, **auth)
                if status == 200:
                    break
            assert status == 200
    finally:
        proxy.down()
        drop_database(pg_base_url, name)
