"""Back-off after failed sends, shared by every process of one user on the host.

Task processes live for one task: an in-memory back-off would let each new one pay the
timeout again. So the back-off also lives in a small file (`until failures`), read with one
`open` before a send and written only when a send fails or the first one succeeds again.
File errors are ignored: the in-process back-off still holds.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable


class Backoff:
    def __init__(
        self,
        path: str,
        base: float,
        cap: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.base = base
        self.cap = cap
        self.clock = clock
        self._until = 0.0
        self._failures = 0

    def _read(self) -> None:
        try:
            with open(self.path, encoding="ascii") as fh:
                until, failures = fh.read().split()
            self._until, self._failures = float(until), int(failures)
        except FileNotFoundError:
            self._until, self._failures = 0.0, 0
        except (OSError, ValueError):
            pass

    def remaining(self) -> float:
        """Seconds before the next try is allowed; 0 means go."""
        now = self.clock()
        if self._until > now:
            return self._until - now
        self._read()
        return max(self._until - now, 0.0)

    def failed(self, retry_after: float | None = None) -> float:
        """Record a failure; returns the back-off it starts (doubling, capped)."""
        self._read()
        self._failures += 1
        if retry_after is not None:
            delay = min(max(retry_after, 0.0), self.cap)
        else:
            delay = min(self.base * 2 ** min(self._failures - 1, 30), self.cap)
        self._until = self.clock() + delay
        tmp = f"{self.path}.{os.getpid()}"
        try:
            with open(tmp, "w", encoding="ascii") as fh:
                fh.write(f"{self._until!r} {self._failures}")
            os.replace(tmp, self.path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        return delay

    def succeeded(self) -> bool:
        """Forget failures; True if there were any (here or in another process)."""
        had = self._failures > 0 or self._until > 0
        self._until, self._failures = 0.0, 0
        try:
            os.unlink(self.path)
            return True
        except FileNotFoundError:
            return had
        except OSError:
            return had
