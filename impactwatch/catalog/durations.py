"""Human durations ("30m", "1h30m", "90s", "2d") to seconds and back."""

from __future__ import annotations

import re

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?[smhdw])+")


class DurationError(ValueError):
    """A duration string that does not parse; the message says what would."""


def parse_duration(value: str | int | float) -> float:
    """Seconds in `value`: a number of seconds, or units like "1h30m" (s, m, h, d, w)."""
    if isinstance(value, bool):
        raise DurationError(f"{value!r} is not a duration; write it like 30m, 2h or 1h30m")
    if isinstance(value, int | float):
        if value < 0:
            raise DurationError(f"{value} is negative; a duration is zero or more")
        return float(value)
    text = str(value).strip().lower().replace(" ", "")
    if not text or not _WHOLE.fullmatch(text):
        raise DurationError(f"{value!r} is not a duration; write it like 30m, 2h, 1h30m or 90s")
    return float(sum(float(n) * _UNITS[u] for n, u in _PART.findall(text)))


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
