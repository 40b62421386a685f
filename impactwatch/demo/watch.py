"""What the demo shows while the story runs: alerts as Alertmanager holds them, Slack messages
as the router wrote them. Reading is I/O; turning what was read into lines is pure."""

from __future__ import annotations

import json
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

AlertKey = tuple[str, str, str]  # alertname, what (dataset or dag_id), severity


def alert_key(labels: dict[str, str]) -> AlertKey:
    what = labels.get("dataset") or labels.get("dag_id") or labels.get("pool") or ""
    return (labels.get("alertname", "?"), what, labels.get("severity", ""))


def fetch_alerts(alertmanager_url: str) -> dict[AlertKey, str]:
    """Active alerts in Alertmanager: key -> summary annotation."""
    url = f"{alertmanager_url}/api/v2/alerts?active=true&silenced=false&inhibited=false"
    with urllib.request.urlopen(url, timeout=5) as resp:
        alerts: list[dict[str, Any]] = json.load(resp)
    return {
        alert_key(a.get("labels", {})): a.get("annotations", {}).get("summary", "") for a in alerts
    }


@dataclass
class MessageLog:
    """The router's JSON Lines file, read incrementally."""

    path: Path
    offset: int = 0
    last_at: float = 0.0  # time.monotonic() of the last record read
    methods: Counter[str] = field(default_factory=Counter)
    channels: Counter[str] = field(default_factory=Counter)

    def new(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        with self.path.open("rb") as fh:
            fh.seek(self.offset)
            data = fh.read()
        end = data.rfind(b"\n") + 1  # a line still being written waits for the next read
        self.offset += end
        records = []
        for line in data[:end].splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            kind = describe_kind(record)
            self.methods[kind] += 1
            self.channels[str(record.get("channel", "?"))] += 1
            records.append(record)
        if records:
            self.last_at = time.monotonic()
        return records


def describe_kind(record: dict[str, Any]) -> str:
    if record.get("method") == "chat.update":
        return "message updated"
    if record.get("thread_ts"):
        return "thread reply"
    return "new message"


def worth_showing(record: dict[str, Any]) -> bool:
    """New messages and thread replies; in-place updates are counted, not shown (the thread
    replies say what changed)."""
    return describe_kind(record) != "message updated"


def message_line(record: dict[str, Any]) -> str:
    text = " ".join(str(record.get("text", "")).split())
    if len(text) > 110:
        text = text[:107] + "..."
    return f"slack  {record.get('channel', '?'):<18} {describe_kind(record):<16} {text}"


@dataclass
class AlertBoard:
    """Alerts seen so far; `update` returns the lines for what changed."""

    active: dict[AlertKey, str] = field(default_factory=dict)
    fired: dict[AlertKey, str] = field(default_factory=dict)

    def update(self, now_active: dict[AlertKey, str]) -> list[str]:
        lines = []
        for key, summary in sorted(now_active.items()):
            if key not in self.active:
                self.fired.setdefault(key, summary)
                lines.append(f"alert  FIRING   {key[2]:<8} {key[0]}: {summary or key[1]}")
        for key in sorted(self.active.keys() - now_active.keys()):
            lines.append(f"alert  resolved {key[2]:<8} {key[0]}: {key[1]}")
        self.active = dict(now_active)
        return lines
