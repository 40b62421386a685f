"""Parse Alertmanager webhook bodies (payload version 4) into our own typed objects, at the edge.

Wire format (Alertmanager `webhook_configs`):

    {"version": "4", "groupKey": "{}:{team=\\"risk\\"}", "truncatedAlerts": 0,
     "status": "firing", "receiver": "impactwatch", "groupLabels": {...},
     "commonLabels": {...}, "commonAnnotations": {...}, "externalURL": "http://am:9093",
     "alerts": [{"status": "firing", "labels": {...}, "annotations": {...},
                 "startsAt": "2026-11-24T06:12:00.123456789Z", "endsAt": "0001-01-01T00:00:00Z",
                 "generatorURL": "http://prometheus/graph?...", "fingerprint": "c0ffee..."}]}

A bad body raises `PayloadError` whose message says what and where; it is safe to return to
the sender. What is inside labels and annotations never makes a body bad: long values are
shortened, control characters replaced and unprintable times clamped (`bounds`), and the
notification says how many were (`Notification.adjusted`). Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError

from impactwatch.contract.alerts import KIND
from impactwatch.router import bounds

VERSION = "4"
MAX_ALERTS = 10_000
_FRACTION = re.compile(r"(\.\d{6})\d+")  # Go writes nanoseconds; Python reads microseconds
_ZERO_TIME = "0001-01-01T00:00:00Z"


class PayloadError(ValueError):
    """The body is not an Alertmanager v4 notification; the message is safe to send back."""


def _to_epoch(value: Any) -> float | None:
    if value is None or value == "" or value == _ZERO_TIME:
        return None
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError("a time is RFC 3339 text, e.g. 2026-11-24T06:12:00Z")
    text = _FRACTION.sub(r"\1", value.replace("Z", "+00:00"))
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise ValueError(f"{value!r} has no UTC offset")
    if parsed.year < 1971:
        return None  # Go's zero time and its friends: "not set"
    return parsed.timestamp()


Time = Annotated[float | None, BeforeValidator(_to_epoch)]
Text = str  # any length: the body's size is capped; `bounds` shortens what is stored
Labels = dict[str, str]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _WireAlert(_Wire):
    status: Literal["firing", "resolved"]
    labels: Labels
    annotations: Labels = Field(default_factory=dict)
    startsAt: Time = None
    endsAt: Time = None
    generatorURL: Text = ""
    fingerprint: str = ""


class _WireNotification(_Wire):
    groupKey: Text = ""
    truncatedAlerts: int = Field(default=0, ge=0)
    status: Literal["firing", "resolved"]
    receiver: Text = ""
    externalURL: Text = ""
    alerts: Annotated[list[_WireAlert], Field(max_length=MAX_ALERTS)]


_ADAPTER = TypeAdapter(_WireNotification)


@dataclass(frozen=True)
class Alert:
    """One alert of a notification, as Alertmanager last saw it."""

    fingerprint: str
    status: Literal["firing", "resolved"]
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_at: float
    ends_at: float | None
    generator_url: str

    def label(self, name: str) -> str:
        return self.labels.get(name, "")


@dataclass(frozen=True)
class Notification:
    group_key: str
    status: str
    receiver: str
    external_url: str
    alerts: tuple[Alert, ...]
    truncated: int
    adjusted: bounds.Adjusted = field(default_factory=bounds.Adjusted)  # (field, reason) -> n


def fingerprint_of(labels: Mapping[str, str]) -> str:
    """A stable id for a label set, for senders that do not give Alertmanager's fingerprint."""
    text = "\x00".join(f"{k}\x01{v}" for k, v in sorted(labels.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _describe(err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"{where or 'body'}: {first['msg']}{more}"


def parse_notification(body: bytes, now: float) -> Notification:
    """The notification in a webhook body, or `PayloadError` with the first problem.

    `now` stands in for a missing `startsAt` (hand-made payloads), so every alert has a start.
    """
    try:
        raw = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PayloadError(f"body is not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise PayloadError("body must be a JSON object (an Alertmanager webhook notification)")
    if str(raw.get("version")) != VERSION:
        raise PayloadError(
            f"unsupported payload version {raw.get('version')!r}; this router takes version "
            f'"{VERSION}" (Alertmanager webhook_configs)'
        )
    try:
        wire = _ADAPTER.validate_python(raw)
    except ValidationError as exc:
        raise PayloadError(_describe(exc)) from None
    adjusted = bounds.Adjusted()
    alerts = tuple(_alert(a, now, adjusted) for a in wire.alerts)
    return Notification(
        group_key=bounds.clean(wire.groupKey, bounds.MAX_TEXT, "group_key", adjusted),
        status=wire.status,
        receiver=bounds.clean(wire.receiver, bounds.MAX_LABEL, "receiver", adjusted),
        external_url=bounds.clean(wire.externalURL, bounds.MAX_TEXT, "url", adjusted),
        alerts=alerts,
        truncated=wire.truncatedAlerts,
        adjusted=adjusted,
    )


def _labels(raw: Mapping[str, str], adjusted: bounds.Adjusted) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in raw.items():
        key = bounds.clean(name, bounds.MAX_LABEL, "label_name", adjusted)
        limit = bounds.MAX_KIND if key == KIND else bounds.MAX_LABEL
        out[key] = bounds.clean(value, limit, "label", adjusted)
    return out


def _annotations(raw: Mapping[str, str], adjusted: bounds.Adjusted) -> dict[str, str]:
    return {
        bounds.clean(name, bounds.MAX_LABEL, "annotation_name", adjusted): bounds.clean(
            value, bounds.MAX_TEXT, "annotation", adjusted, free_text=True
        )
        for name, value in raw.items()
    }


def _alert(wire: _WireAlert, now: float, adjusted: bounds.Adjusted) -> Alert:
    labels = _labels(wire.labels, adjusted)
    fingerprint = wire.fingerprint
    if fingerprint and not fingerprint.isprintable():
        adjusted[("fingerprint", bounds.CONTROL)] += 1
        fingerprint = fingerprint_of({"fingerprint": fingerprint})
    elif len(fingerprint) > bounds.MAX_FINGERPRINT:
        adjusted[("fingerprint", bounds.TOO_LONG)] += 1
        fingerprint = fingerprint_of({"fingerprint": fingerprint})
    starts = wire.startsAt if wire.startsAt is not None else now
    ends = wire.endsAt if wire.status == "resolved" else None
    return Alert(
        fingerprint=fingerprint or fingerprint_of(labels),
        status=wire.status,
        labels=labels,
        annotations=_annotations(wire.annotations, adjusted),
        starts_at=bounds.clamp_time(starts, "time", adjusted),
        ends_at=bounds.clamp_time(ends, "time", adjusted) if ends is not None else None,
        generator_url=bounds.clean(wire.generatorURL, bounds.MAX_TEXT, "url", adjusted),
    )
