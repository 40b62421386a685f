"""The router's WSGI app, called directly: auth, limits, reasons, Slack signatures, /metrics."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from slack_sdk.signature import SignatureVerifier
from sqlalchemy import func, select

from impactwatch.router.http_app import RouterApp
from impactwatch.router.service import RouterService
from impactwatch.router.settings import RouterSettings
from impactwatch.router.sinks import ConsoleSink
from impactwatch.router.tables import alert_t, incident_t
from tests.unit.test_router_support import alert, body, catalog

TOKEN = "webhook-token-123"
SECRET = "slack-signing-secret"


@pytest.fixture
def app(tmp_path: Path) -> Iterator[RouterApp]:
    settings = RouterSettings(state_db=f"sqlite:///{tmp_path / 'r.db'}", settle_seconds=0)
    service = RouterService(
        settings, catalog(), sink=ConsoleSink(tmp_path / "m.jsonl", io.StringIO())
    )
    yield RouterApp(service, TOKEN, SECRET, max_body=4096)
    service.close()


def call(
    app: RouterApp, path: str, data: bytes = b"", method: str = "POST", **headers: str
) -> tuple[int, Any]:
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "CONTENT_LENGTH": str(len(data)),
        "wsgi.input": io.BytesIO(data),
        **{f"HTTP_{k.upper()}": v for k, v in headers.items()},
    }
    status: list[str] = []
    out = b"".join(app(environ, lambda s, h, *_: status.append(s)))
    try:
        return int(status[0][:3]), json.loads(out)
    except json.JSONDecodeError:
        return int(status[0][:3]), out.decode()


def stored(app: RouterApp) -> tuple[int, int]:
    with app.service.store.read() as conn:
        alerts = conn.execute(select(func.count()).select_from(alert_t)).scalar_one()
        incidents = conn.execute(select(func.count()).select_from(incident_t)).scalar_one()
        return alerts, incidents


def test_the_webhook_wants_the_bearer_token_and_a_v4_payload(app: RouterApp) -> None:
    good = body([alert(dataset="market_data", team="markets")])
    assert call(app, "/alertmanager", good)[0] == 401
    assert call(app, "/alertmanager", good, authorization="Bearer nope")[0] == 401
    auth = {"authorization": f"Bearer {TOKEN}"}
    status, reply = call(app, "/alertmanager", b"{oops", **auth)
    assert status == 400 and "not JSON" in reply["error"]
    status, reply = call(app, "/alertmanager", good.replace(b'"4"', b'"3"'), **auth)
    assert status == 400 and "version '3'" in reply["error"]
    status, reply = call(app, "/alertmanager", b"x" * 5000, **auth)
    assert status == 413 and "4096" in reply["error"]
    assert call(app, "/alertmanager", method="GET")[0] == 405
    assert stored(app) == (0, 0)  # nothing half-stored
    status, reply = call(app, "/alertmanager", good, **auth)
    assert status == 200 and reply["alerts"] == {"new": 1} and len(reply["incidents"]) == 1
    assert stored(app) == (1, 1)
    status, metrics = call(app, "/metrics", method="GET")
    for outcome, n in (("accepted", 1), ("unauthorized", 2), ("invalid", 2), ("too_large", 1)):
        assert f'impactwatch_router_notifications_total{{outcome="{outcome}"}} {n}.0' in metrics
    assert "impactwatch_router_open_incidents" in metrics
    assert call(app, "/healthz", method="GET") == (200, {"status": "ok"})


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


def test_button_presses_need_a_valid_recent_slack_signature(app: RouterApp) -> None:
    call(app, "/alertmanager", body([alert(dataset="market_data", team="markets")]),
         authorization=f"Bearer {TOKEN}")  # fmt: skip
    with app.service.store.read() as conn:
        incident_id = conn.execute(select(incident_t.c.id)).scalar_one()
    data = press("iw_ack", incident_id)
    assert call(app, "/slack/interactions", data)[0] == 401
    assert call(app, "/slack/interactions", data, **signed(data, secret="other"))[0] == 401
    stale = signed(data, at=time.time() - 600)
    assert call(app, "/slack/interactions", data, **stale)[0] == 401
    tampered = signed(data)
    assert call(app, "/slack/interactions", press("iw_ack", "x"), **tampered)[0] == 401
    bad = press("iw_reboot", incident_id)
    status, reply = call(app, "/slack/interactions", bad, **signed(bad))
    assert status == 400 and "iw_reboot" in reply["error"]
    assert call(app, "/slack/interactions", data, **signed(data))[0] == 200
    with app.service.store.read() as conn:
        assert conn.execute(select(incident_t.c.acked_by)).scalar_one() == "U0ALICE"
    link = press("iw_link_runbook", "")
    assert call(app, "/slack/interactions", link, **signed(link))[0] == 200


def test_without_a_signing_secret_every_press_is_refused(tmp_path: Path) -> None:
    settings = RouterSettings(state_db=f"sqlite:///{tmp_path / 'r.db'}")
    service = RouterService(settings, catalog(), sink=ConsoleSink(tmp_path / "m", io.StringIO()))
    try:
        app = RouterApp(service, TOKEN, None, 4096)
        data = press("iw_ack", "abc")
        assert call(app, "/slack/interactions", data, **signed(data))[0] == 401
    finally:
        service.close()


def test_settings_read_the_documented_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-secret")
    monkeypatch.setenv("SLACK_API_URL", "http://127.0.0.1:1/api/")
    monkeypatch.setenv("IMPACTWATCH_WEBHOOK_TOKEN", "tok")
    monkeypatch.setenv("IMPACTWATCH_ROUTER_STATE_DB", "sqlite:///x.db")
    settings = RouterSettings()
    assert settings.slack_api_url == "http://127.0.0.1:1/api/"
    assert settings.webhook_secret() == "tok" and settings.state_db == "sqlite:///x.db"
    assert "xoxb-secret" not in repr(settings) and "tok'" not in repr(settings)
