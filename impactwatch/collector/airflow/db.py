"""Connecting to Airflow's metadata DB read-only, and watermarks over its monotonic ids."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.pool import QueuePool

GAP_GRACE = 600.0  # seconds a skipped id stays worth re-checking (a transaction committing late)


@dataclass
class IdCursor:
    """High watermark over a monotonic id, plus recently skipped ids still worth re-checking."""

    high: int = 0
    gaps: dict[int, float] = field(default_factory=dict)
    floor: int = 0  # ids at or below this existed at first start: history, no gap tracking

    def advance(self, seen: Iterable[int], now: float) -> None:
        ids = sorted(set(seen))
        for i in ids:
            self.gaps.pop(i, None)
        if ids and ids[-1] > self.high:
            known = set(ids)
            for missing in range(max(self.high, self.floor) + 1, ids[-1]):
                if missing not in known:
                    self.gaps[missing] = now
            self.high = ids[-1]
        for i, first in list(self.gaps.items()):
            if now - first > GAP_GRACE:
                del self.gaps[i]

    def dump(self) -> str:
        gaps = {str(k): v for k, v in self.gaps.items()}
        return json.dumps({"high": self.high, "floor": self.floor, "gaps": gaps})

    @classmethod
    def load(cls, text: str | None) -> IdCursor | None:
        if not text:
            return None
        raw = json.loads(text)
        gaps = {int(k): float(v) for k, v in raw.get("gaps", {}).items()}
        return cls(int(raw["high"]), gaps, int(raw.get("floor", 0)))


def make_airflow_engine(url: str, statement_timeout_ms: int = 5000) -> Engine:
    """A small, read-only pool on Airflow's DB with a statement timeout."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = parsed.database or ""

        def connect() -> Any:
            conn = sqlite3.connect(
                f"file:{path}?mode=ro", uri=True, timeout=5, check_same_thread=False
            )
            return conn

        return create_engine("sqlite://", creator=connect, poolclass=QueuePool, pool_size=2)
    if parsed.get_backend_name() == "postgresql":
        options = f"-c statement_timeout={statement_timeout_ms} -c default_transaction_read_only=on"
        return create_engine(
            parsed,
            pool_size=2,
            max_overflow=1,
            pool_pre_ping=True,
            pool_recycle=1800,
            connect_args={
                "options": options,
                "connect_timeout": 5,
                "application_name": "impactwatch",
            },
        )
    return create_engine(parsed, pool_size=2, max_overflow=1, pool_pre_ping=True)
