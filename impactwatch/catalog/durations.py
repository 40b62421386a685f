"""Human durations ("30m", "1h30m", "90s", "2d") to seconds and back."""

from __future__ import annotations

import math
import re

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?[smhdw])+")


MIN_LIMIT_SECONDS = 1.0
MAX_LIMIT_SECONDS = 366 * 86400.0
"""A limit in the catalog (freshness, max_duration, escalation `after`) lies between these: zero
would fire at once, and past a year (leap years included) it would never fire."""


class DurationError(ValueError):
    """A duration string that does not parse; the message says what would."""


def parse_duration(value: str | int | float) -> float:
    """Seconds in `value`: a number of seconds, or units like "1h30m" (s, m, h, d, w)."""
    if isinstance(value, bool):
        raise DurationError(f"{value!r} is not a duration; write it like 30m, 2h or 1h30m")
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise DurationError(f"{value} is not a duration; write it like 30m, 2h or 1h30m")
        if value < 0:
            raise DurationError(f"{value} is negative; a duration is zero or more")
        return float(value)
    text = str(value).strip().lower().replace(" ", "")
    if not text or not _WHOLE.fullmatch(text):
        raise DurationError(f"{value!r} is not a duration; write it like 30m, 2h, 1h30m or 90s")
    seconds = float(sum(float(n) * _UNITS[u] for n, u in _PART.findall(text)))
    if not math.isfinite(seconds):
        raise DurationError(f"{value!r} is not a duration; write it like 30m, 2h or 1h30m")
    return seconds


def parse_limit(value: str | int | float) -> float:
    """Seconds in `value` (see `parse_duration`), refused outside 1 s to 366 days."""
    seconds = parse_duration(value)
    if not MIN_LIMIT_SECONDS <= seconds <= MAX_LIMIT_SECONDS:
        shown = repr(value) if isinstance(value, str) else f"{value} (seconds)"
        size = "short" if seconds < MIN_LIMIT_SECONDS else "long"
        raise DurationError(f"{shown} is too {size}; write between 1s and 366d, e.g. 30m or 2h")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest unit string for `seconds` (5400 -> "1h30m"); "0s" for zero."""
    remaining = round(seconds)
    if remaining <= 0:
        return "0s"
    parts = []
    for unit in ("d", "h", "m", "s"):
        size = _UNITS[unit]
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
