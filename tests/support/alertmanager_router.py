"""Real Alertmanagers (Debian's prometheus-alertmanager) for the router's tests and benchmarks.

`RouterAlertmanager` starts one on free loopback ports with a config that sends every group to
the router's webhook with a bearer token (`http_config.authorization.credentials_file`), the
grouping the generated config uses, and fast timers; or, for comparison, with Alertmanager's own
`slack_configs` pointed at a Slack stand-in's incoming-webhook URL. Clustering is off: an "HA
pair" here is two independent instances sent the same alerts, the worst case for duplicates.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.support.tcpproxy import _free_port

GROUP_BY = ["team", "dataset", "dag_id", "component"]  # as impactwatch rules generates


def router_config(url: str, token_file: Path, **timers: str) -> dict[str, Any]:
    return {
        "route": {"receiver": "router", "group_by": GROUP_BY, **_timers(timers)},
        "receivers": [
            {
                "name": "router",
                "webhook_configs": [
                    {
                        "url": url,
                        "send_resolved": True,
                        "max_alerts": 0,
                        "http_config": {
                            "authorization": {
                                "type": "Bearer",
                                "credentials_file": str(token_file),
                            }
                        },
                    }
                ],
            }
        ],
    }


def slack_config(webhook_url: str, channels: Mapping[str, str], **timers: str) -> dict[str, Any]:
    """Alertmanager's own Slack integration, one route and channel per team."""
    routes = [
        {"receiver": f"slack-{team}", "matchers": [f'team="{team}"']} for team in sorted(channels)
    ]
    receivers = [{"name": "slack-default", "slack_configs": [_slack(webhook_url, "#alerts")]}]
    receivers += [
        {"name": f"slack-{team}", "slack_configs": [_slack(webhook_url, channel)]}
        for team, channel in sorted(channels.items())
    ]
    return {
        "route": {
            "receiver": "slack-default",
            "group_by": GROUP_BY,
            "routes": routes,
            **_timers(timers),
        },
        "receivers": receivers,
    }


def _slack(url: str, channel: str) -> dict[str, Any]:
    return {"api_url": url, "channel": channel, "send_resolved": True}


def _timers(timers: Mapping[str, str]) -> dict[str, str]:
    return {"group_wait": "1s", "group_interval": "1s", "repeat_interval": "1h", **timers}


class RouterAlertmanager:
    """`config` is a dict, or a function of the token file's path (see `for_router`)."""

    def __init__(
        self, config: dict[str, Any] | Callable[[Path], dict[str, Any]], token: str | None = None
    ) -> None:
        binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
        if binary is None:
            raise RuntimeError("alertmanager is not installed: run `make test` (it apt-installs)")
        self.dir = Path(tempfile.mkdtemp(prefix="iw-am-router-"))
        if token is not None:
            (self.dir / "token").write_text(token)
            (self.dir / "token").chmod(0o600)
        if callable(config):
            config = config(self.dir / "token")
        (self.dir / "alertmanager.yml").write_text(json.dumps(config))
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = self.dir / "alertmanager.log"
        self.proc = subprocess.Popen(
            [
                binary,
                f"--config.file={self.dir / 'alertmanager.yml'}",
                f"--storage.path={self.dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=",
            ],
            stdout=subprocess.DEVNULL,
            stderr=self.log.open("w"),
        )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    @classmethod
    def for_router(cls, url: str, token: str, **timers: str) -> RouterAlertmanager:
        return cls(lambda token_file: router_config(url, token_file, **timers), token=token)

    def _wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(self.log.read_text()[-2000:])
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise TimeoutError(f"alertmanager did not become ready: {self.log.read_text()[-2000:]}")

    def post(self, alerts: list[dict[str, Any]]) -> None:
        """What Prometheus does: POST /api/v2/alerts."""
        request = urllib.request.Request(
            f"{self.url}/api/v2/alerts",
            data=json.dumps(alerts).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as resp:
            assert resp.status == 200, resp.status

    def groups(self) -> list[dict[str, Any]]:
        """The alert groups Alertmanager holds now (GET /api/v2/alerts/groups)."""
        with urllib.request.urlopen(f"{self.url}/api/v2/alerts/groups", timeout=10) as resp:
            return list(json.load(resp))

    def silence(self, matchers: Mapping[str, str], hours: float = 1) -> str:
        """A silence of alerts with these label values, created through API v2; its id."""
        now = time.time()
        body = {
            "matchers": [
                {"name": k, "value": v, "isRegex": False, "isEqual": True}
                for k, v in matchers.items()
            ],
            "startsAt": _iso(now - 60),
            "endsAt": _iso(now + hours * 3600),
            "createdBy": "impactwatch tests",
            "comment": "muted by a test",
        }
        request = urllib.request.Request(
            f"{self.url}/api/v2/silences",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as resp:
            return str(json.load(resp)["silenceID"])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)


def am_alert(
    labels: Mapping[str, str],
    annotations: Mapping[str, str] | None = None,
    starts: float | None = None,
    ends: float | None = None,
) -> dict[str, Any]:
    """An alert as Prometheus posts it (firing unless `ends` is in the past)."""
    out: dict[str, Any] = {
        "labels": dict(labels),
        "annotations": dict(annotations or {}),
        "generatorURL": "http://prometheus.example:9090/graph",
    }
    if starts is not None:
        out["startsAt"] = _iso(starts)
    out["endsAt"] = _iso(ends if ends is not None else time.time() + 3600)
    return out


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")
