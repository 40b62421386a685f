"""A webhook receiver on a free loopback port that records what Alertmanager posts to it.

Stands in for the router in tests and benchmarks: every POST is kept with its arrival time,
path, headers and JSON body; `wait_for` blocks until a matching notification arrives.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.support.background_http import BackgroundHTTPServer


@dataclass(frozen=True)
class Notification:
    received_at: float  # time.time() when the body was read
    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def alerts(self) -> list[dict[str, Any]]:
        return list(self.body.get("alerts", []))


class WebhookReceiver(BackgroundHTTPServer):
    def __init__(self, path: str = "/alertmanager") -> None:
        self.path = path
        self.notifications: list[Notification] = []
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                arrived = time.time()
                status = 200 if self.path == receiver.path else 404
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
                if status == 200:
                    receiver._record(
                        Notification(arrived, self.path, dict(self.headers), json.loads(raw))
                    )

            def log_message(self, format: str, *args: Any) -> None:
                pass

        super().__init__(Handler)
        self.url = f"http://127.0.0.1:{self.port}{path}"

    def _record(self, notification: Notification) -> None:
        with self._changed:
            self.notifications.append(notification)
            self._changed.notify_all()

    def wait_for(
        self, match: Callable[[Notification], bool], timeout: float
    ) -> Notification | None:
        """The first notification (received so far or within `timeout` s) that matches."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for notification in self.notifications:
                    if match(notification):
                        return notification
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._changed.wait(remaining)


def firing(alertname: str, **labels: str) -> Callable[[Notification], bool]:
    """Matches a notification with a firing alert named `alertname` carrying `labels`."""

    def match(n: Notification) -> bool:
        return any(
            a["status"] == "firing"
            and a["labels"].get("alertname") == alertname
            and all(a["labels"].get(k) == v for k, v in labels.items())
            for a in n.alerts
        )

    return match


def resolved(alertname: str, **labels: str) -> Callable[[Notification], bool]:
    """Matches a notification in which the alert named `alertname` with `labels` resolved."""

    def match(n: Notification) -> bool:
        return any(
            a["status"] == "resolved"
            and a["labels"].get("alertname") == alertname
            and all(a["labels"].get(k) == v for k, v in labels.items())
            for a in n.alerts
        )

    return match
