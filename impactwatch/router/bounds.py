"""Inbound values bounded where they enter the router. Pure.

An Alertmanager notification is never refused for what is inside its labels: a value longer
than the router stores, or one with a NUL or other control character (which PostgreSQL's text
types refuse), becomes a safe, shortened value that says so; a time the calendar cannot print
(Python's datetime ends with year 9999) is clamped and shown as out of range. Each change is
counted by (field, reason) for the router's /metrics.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from datetime import UTC, datetime

MAX_LABEL = 200  # label names and values: identifiers (rt_alert.alertname holds 300)
MAX_KIND = 50  # the `kind` label (rt_alert.kind)
MAX_TEXT = 10_000  # annotations, URLs, Alertmanager's group key
MAX_FINGERPRINT = 100  # rt_alert.fingerprint
# A day inside what datetime can hold either way, so a local-time rendering never overflows.
EARLIEST = datetime(1971, 1, 1, tzinfo=UTC).timestamp()  # earlier: Go's zero time, "not set"
LATEST = datetime(9999, 12, 30, tzinfo=UTC).timestamp()
OUT_OF_RANGE = "(date out of range)"

TOO_LONG = "too_long"
CONTROL = "control_character"
OUT_OF_RANGE_REASON = "out_of_range"
REASONS = (TOO_LONG, CONTROL, OUT_OF_RANGE_REASON)

# NUL and the other C0 controls, DEL, and lone surrogates (JSON's "\ud800" decodes to one;
# UTF-8 cannot encode it). Free text keeps tabs and line ends.
_IDENT_BAD = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")
_TEXT_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
REPLACEMENT = "\ufffd"

Adjusted = Counter[tuple[str, str]]
"""(field, reason) -> how many values were changed."""


def shorten(value: str, limit: int) -> str:
    """`value` cut to `limit` characters with its original length and a digest of it noted,
    so two long values that differ only past the cut stay different."""
    if len(value) <= limit:
        return value
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    note = f"… ({len(value)} chars, #{digest})"
    return value[: max(limit - len(note), 0)] + note


def clean(
    value: str, limit: int, field: str, adjusted: Adjusted, *, free_text: bool = False
) -> str:
    """`value` with control characters replaced (U+FFFD) and cut to `limit` (`shorten`),
    each change counted in `adjusted` under `field`."""
    bad = _TEXT_BAD if free_text else _IDENT_BAD
    if bad.search(value):
        value = bad.sub(REPLACEMENT, value)
        adjusted[(field, CONTROL)] += 1
    if len(value) > limit:
        value = shorten(value, limit)
        adjusted[(field, TOO_LONG)] += 1
    return value


def clamp_time(epoch: float, field: str, adjusted: Adjusted) -> float:
    """`epoch` inside [EARLIEST, LATEST]; a time outside (or not a number) is clamped and
    counted. `printable` tells a clamped time from a real one."""
    if math.isnan(epoch):
        adjusted[(field, OUT_OF_RANGE_REASON)] += 1
        return LATEST
    if epoch < EARLIEST or epoch > LATEST:
        adjusted[(field, OUT_OF_RANGE_REASON)] += 1
        return min(max(epoch, EARLIEST), LATEST)
    return epoch


def printable(epoch: float) -> bool:
    """Whether `epoch` is a time to show (not a clamped one, nor outside the calendar)."""
    return EARLIEST < epoch < LATEST
