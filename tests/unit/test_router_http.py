"""The router's ASGI app on a real uvicorn (a free loopback port): auth and limits checked before
the body is read, short bodies never processed, reasons, Slack signatures, /metrics."""

from __future__ import annotations

import http.client
import io
import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from slack_sdk.signature import SignatureVerifier
from sqlalchemy import func, select

from impactwatch.router.http_app import create_app
from impactwatch.router.service import RouterService
from impactwatch.router.settings import RouterSettings
from impactwatch.router.sinks import ConsoleSink
from impactwatch.router.tables import alert_t, incident_t
from impactwatch.serving import Server
from tests.unit.test_router_support import alert, body, catalog

TOKEN = "webhook-token-123"
SECRET = "slack-signing-secret"
HUGE = 4 * 1_048_576


@dataclass
class Router:
    service: RouterService
    port: int

    def call(
        self, path: str, data: bytes = b"", method: str = "POST", **headers: str
    ) -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, data if method == "POST" else None,
                         {k.replace("_", "-"): v for k, v in headers.items()})  # fmt: skip
            resp = conn.getresponse()
            out = resp.read()
        finally:
            conn.close()
        try:
            return resp.status, json.loads(out)
        except json.JSONDecodeError:
            return resp.status, out.decode()

    def raw(self, head: str, body: bytes = b"", *, half_close: bool = False) -> bytes:
        """Send a request head (and maybe part of a body) on a raw socket; the whole answer."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
            answer = b""
            while chunk := sock.recv(65536):  # the server closes: refusals send Connection: close
                answer += chunk
            return answer

    def stored(self) -> tuple[int, int]:
        with self.service.store.read() as conn:
            alerts = conn.execute(select(func.count()).select_from(alert_t)).scalar_one()
            incidents = conn.execute(select(func.count()).select_from(incident_t)).scalar_one()
            return alerts, incidents

    def metric(self, sample: str) -> float:
        status, text = self.call("/metrics", method="GET")
        assert status == 200
        for line in text.splitlines():
            if line.startswith(sample + " "):
                return float(line.rpartition(" ")[2])
        return 0.0


def serve(tmp_path: Path, **settings: Any) -> Iterator[Router]:
    config = RouterSettings(state_db=f"sqlite:///{tmp_path / 'r.db'}", settle_seconds=0, **settings)
    service = RouterService(config, catalog(), sink=ConsoleSink(tmp_path / "m", io.StringIO()))
    server = Server(create_app(service, TOKEN), "127.0.0.1", 0, config.server_limits(), name="t")
    server.start()
    try:
        yield Router(service, server.port)
    finally:
        server.stop()
        service.close()


@pytest.fixture
def router(tmp_path: Path) -> Iterator[Router]:
    yield from serve(tmp_path, max_body_bytes=4096, slack_signing_secret=SECRET)


def test_the_webhook_wants_the_bearer_token_and_a_v4_payload(router: Router) -> None:
    good = body([alert(dataset="market_data", team="markets")])
    assert router.call("/alertmanager", good)[0] == 401
    assert router.call("/alertmanager", good, authorization="Bearer nope")[0] == 401
    auth = {"authorization": f"Bearer {TOKEN}"}
    status, reply = router.call("/alertmanager", b"{oops", **auth)
    assert status == 400 and "not JSON" in reply["error"]
    status, reply = router.call("/alertmanager", good.replace(b'"4"', b'"3"'), **auth)
    assert status == 400 and "version '3'" in reply["error"]
    status, reply = router.call("/alertmanager", b"x" * 5000, **auth)
    assert status == 413 and "4096" in reply["error"]
    assert router.call("/alertmanager", method="GET")[0] == 405
    assert router.stored() == (0, 0)  # nothing half-stored
    status, reply = router.call("/alertmanager", good, **auth)
    assert status == 200 and reply["alerts"] == {"new": 1} and len(reply["incidents"]) == 1
    assert router.stored() == (1, 1)
    status, reply = router.call("/alertmanager", good, **auth)  # Alertmanager repeats itself
    assert status == 200 and reply["alerts"] == {"duplicate": 1} and reply["incidents"] == []
    assert router.stored() == (1, 1)
    status, metrics = router.call("/metrics", method="GET")
    for outcome, n in (("accepted", 2), ("unauthorized", 2), ("invalid", 2), ("too_large", 1)):
        assert f'impactwatch_router_notifications_total{{outcome="{outcome}"}} {n}.0' in metrics
    assert "impactwatch_router_open_incidents" in metrics
    assert router.call("/healthz", method="GET") == (200, {"status": "ok"})
    assert router.call("/nowhere", method="GET")[0] == 404


def test_the_token_and_the_length_are_checked_before_the_body_is_read(router: Router) -> None:
    # No body byte is sent: each answer comes from the head alone, and the connection is closed.
    head = "POST /alertmanager HTTP/1.1\nHost: r\nContent-Length: {n}\n{auth}"
    answer = router.raw(head.format(n=HUGE, auth="Authorization: Bearer nope\n"))
    assert answer.startswith(b"HTTP/1.1 401 ") and b"bearer token" in answer
    answer = router.raw(head.format(n=HUGE, auth=f"Authorization: Bearer {TOKEN}\n"))
    assert answer.startswith(b"HTTP/1.1 413 ") and b"4096" in answer
    chunked = "POST /alertmanager HTTP/1.1\nHost: r\nTransfer-Encoding: chunked\n"
    answer = router.raw(chunked + f"Authorization: Bearer {TOKEN}\n")
    assert answer.startswith(b"HTTP/1.1 411 ")
    assert router.metric('impactwatch_router_notifications_total{outcome="unauthorized"}') == 1
    assert router.metric('impactwatch_router_notifications_total{outcome="too_large"}') == 1
    assert router.metric('impactwatch_router_notifications_total{outcome="invalid"}') == 1  # 411


def test_a_body_shorter_than_its_length_is_never_processed(router: Router) -> None:
    good = body([alert(dataset="market_data", team="markets")])
    head = f"POST /alertmanager HTTP/1.1\nHost: r\nAuthorization: Bearer {TOKEN}\n"
    head += f"Content-Length: {len(good)}\nConnection: close\n"
    router.raw(head, good[:-10], half_close=True)  # the client gives up 10 bytes short
    deadline = time.monotonic() + 5
    while router.metric('impactwatch_router_notifications_total{outcome="invalid"}') < 1:
        assert time.monotonic() < deadline, "the cut request was not counted"
        time.sleep(0.05)
    assert router.stored() == (0, 0)
    assert router.metric('impactwatch_router_notifications_total{outcome="accepted"}') == 0
    # The same bytes, whole, are taken.
    assert router.raw(head, good).startswith(b"HTTP/1.1 200 ")
    assert router.stored() == (1, 1)


def press(action_id: str, value: str, user: str = "U0ALICE") -> bytes:
    payload = {
        "type": "block_actions",
        "user": {"id": user, "username": "alice"},
        "container": {"type": "message", "channel_id": "C1", "message_ts": "1.2"},
        "actions": [{"action_id": action_id, "value": value, "type": "button"}],
    }
    return urlencode({"payload": json.dumps(payload)}).encode()


def signed(data: bytes, at: float | None = None, secret: str = SECRET) -> dict[str, str]:
    stamp = str(int(at if at is not None else time.time()))
    signature = SignatureVerifier(secret).generate_signature(timestamp=stamp, body=data)
    return {"x_slack_request_timestamp": stamp, "x_slack_signature": str(signature)}


def test_button_presses_need_a_valid_recent_slack_signature(router: Router) -> None:
    router.call("/alertmanager", body([alert(dataset="market_data", team="markets")]),
                authorization=f"Bearer {TOKEN}")  # fmt: skip
    with router.service.store.read() as conn:
        incident_id = conn.execute(select(incident_t.c.id)).scalar_one()
    data = press("iw_ack", incident_id)
    assert router.call("/slack/interactions", data)[0] == 401
    assert router.call("/slack/interactions", data, **signed(data, secret="other"))[0] == 401
    stale = signed(data, at=time.time() - 600)
    assert router.call("/slack/interactions", data, **stale)[0] == 401
    tampered = signed(data)
    assert router.call("/slack/interactions", press("iw_ack", "x"), **tampered)[0] == 401
    bad = press("iw_reboot", incident_id)
    status, reply = router.call("/slack/interactions", bad, **signed(bad))
    assert status == 400 and "iw_reboot" in reply["error"]
    assert router.call("/slack/interactions", data, **signed(data))[0] == 200
    with router.service.store.read() as conn:
        assert conn.execute(select(incident_t.c.acked_by)).scalar_one() == "U0ALICE"
    link = press("iw_link_runbook", "")
    assert router.call("/slack/interactions", link, **signed(link))[0] == 200
    unauthorized = 'impactwatch_router_interactions_total{action="unknown",outcome="unauthorized"}'
    assert router.metric(unauthorized) == 4
    assert router.metric('impactwatch_router_interactions_total{action="ack",outcome="ok"}') == 1


def test_slack_headers_and_size_are_checked_before_the_body_is_read(router: Router) -> None:
    head = "POST /slack/interactions HTTP/1.1\nHost: r\nContent-Length: {n}\n"
    sig = "v0=" + "0" * 64
    now = int(time.time())
    for headers in (
        "",  # neither header
        f"X-Slack-Signature: {sig}\n",  # no timestamp
        f"X-Slack-Request-Timestamp: {now}\n",  # no signature
        f"X-Slack-Request-Timestamp: soon\nX-Slack-Signature: {sig}\n",
        f"X-Slack-Request-Timestamp: {now}\nX-Slack-Signature: md5=abc\n",
        f"X-Slack-Request-Timestamp: {now - 600}\nX-Slack-Signature: {sig}\n",  # replayed
        f"X-Slack-Request-Timestamp: {now + 600}\nX-Slack-Signature: {sig}\n",
    ):
        answer = router.raw(head.format(n=HUGE) + headers)  # not one body byte sent
        assert answer.startswith(b"HTTP/1.1 401 "), headers
    fresh = f"X-Slack-Request-Timestamp: {now}\nX-Slack-Signature: {sig}\n"
    answer = router.raw(head.format(n=HUGE) + fresh)
    assert answer.startswith(b"HTTP/1.1 413 ") and str(64 * 1024).encode() in answer
    unauthorized = 'impactwatch_router_interactions_total{action="unknown",outcome="unauthorized"}'
    assert router.metric(unauthorized) == 7
    too_large = 'impactwatch_router_interactions_total{action="unknown",outcome="too_large"}'
    assert router.metric(too_large) == 1


def test_without_a_signing_secret_every_press_is_refused(tmp_path: Path) -> None:
    for router in serve(tmp_path):
        data = press("iw_ack", "abc")
        assert router.call("/slack/interactions", data, **signed(data))[0] == 401


def test_settings_read_the_documented_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-secret")
    monkeypatch.setenv("SLACK_API_URL", "http://127.0.0.1:1/api/")
    monkeypatch.setenv("IMPACTWATCH_WEBHOOK_TOKEN", "tok")
    monkeypatch.setenv("IMPACTWATCH_ROUTER_STATE_DB", "sqlite:///x.db")
    monkeypatch.setenv("IMPACTWATCH_ROUTER_REQUEST_TIMEOUT", "12.5")
    monkeypatch.setenv("IMPACTWATCH_ROUTER_INTERACTIONS_MAX_BODY_BYTES", "32768")
    settings = RouterSettings()
    assert settings.slack_api_url == "http://127.0.0.1:1/api/"
    assert settings.webhook_secret() == "tok" and settings.state_db == "sqlite:///x.db"
    assert "xoxb-secret" not in repr(settings) and "tok'" not in repr(settings)
    limits = settings.server_limits()
    assert (limits.request_timeout, limits.max_connections) == (12.5, 1000)
    assert settings.interactions_max_body_bytes == 32768


def test_the_router_serves_the_generated_runbooks_as_text(tmp_path: Path) -> None:
    folder = tmp_path / "runbooks" / "data-products"
    folder.mkdir(parents=True)
    (folder / "market_data.md").write_text("# Market prices\n", encoding="utf-8")
    (tmp_path / "secret.txt").write_text("not a runbook", encoding="utf-8")
    for served in serve(tmp_path, runbooks_dir=str(tmp_path / "runbooks")):
        status, text = served.call("/runbooks/data-products/market_data.md", method="GET")
        assert (status, text) == (200, "# Market prices\n")
        assert served.call("/runbooks/../secret.txt", method="GET")[0] == 404
        assert served.call("/runbooks/nope.md", method="GET")[0] == 404
    with pytest.raises(ValueError, match="is not a folder"):
        RouterSettings(runbooks_dir=str(tmp_path / "missing"))
