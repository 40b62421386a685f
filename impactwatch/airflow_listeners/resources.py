"""CPU seconds and peak memory of a task, measured in the process that runs it.

CPU: user + system time of this process and of the children it waited for (a BashOperator's
shell), from the task's `running` hook to its end. Peak RSS: the high-water mark of this
process, or of its largest child, whichever is larger. In `airflow dags test`, where every task
runs in one process, the peak is that process's so far.
"""

from __future__ import annotations

import resource
import sys
import threading
from dataclasses import dataclass

# ru_maxrss is in kilobytes on Linux and in bytes on macOS.
_RSS_UNIT = 1 if sys.platform == "darwin" else 1024
_MAX_OPEN = 1000  # tasks measured at once in one process; more means hooks were missed


@dataclass(frozen=True)
class Usage:
    cpu_seconds: float
    peak_rss_bytes: int


def snapshot() -> Usage:
    """This process and its reaped children, now."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime
    return Usage(cpu, max(own.ru_maxrss, kids.ru_maxrss) * _RSS_UNIT)


class Meter:
    """Start at a task's `running` hook, stop at its end; keyed by the task try."""

    def __init__(self) -> None:
        self._started: dict[tuple, Usage] = {}
        self._lock = threading.Lock()

    def start(self, key: tuple) -> None:
        usage = snapshot()
        with self._lock:
            if len(self._started) >= _MAX_OPEN:
                self._started.clear()
            self._started[key] = usage

    def stop(self, key: tuple) -> Usage | None:
        """What the task used since `start`, or None if it was not started here."""
        with self._lock:
            begun = self._started.pop(key, None)
        if begun is None:
            return None
        now = snapshot()
        return Usage(max(now.cpu_seconds - begun.cpu_seconds, 0.0), now.peak_rss_bytes)

    def clear(self) -> None:
        with self._lock:
            self._started.clear()
