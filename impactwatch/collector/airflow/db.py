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


def tcp_liveness(dead_after: float) -> dict[str, int]:
    """libpq options that make a connection whose peer went silent (a black-holed network, a
    host gone) fail within about `dead_after` seconds instead of waiting for the kernel's
    default of some 15 minutes: `tcp_user_timeout` for data sent and never acknowledged,
    keepalive probes while waiting for an answer. A slow query is not cut: its server still
    acknowledges and answers probes (the statement timeout bounds it)."""
    idle = max(1, int(dead_after // 2))
    count = 3
    interval = max(1, int((dead_after - idle) // count))
    return {
        "keepalives": 1,
        "keepalives_idle": idle,
        "keepalives_interval": interval,
        "keepalives_count": count,
        "tcp_user_timeout": int(dead_after * 1000),
    }


def make_airflow_engine(
    url: str, statement_timeout_ms: int = 5000, dead_after: float = 10.0
) -> Engine:
    """A small, read-only pool on Airflow's DB with a statement timeout; on PostgreSQL a
    connection that stops answering fails after `dead_after` seconds (`tcp_liveness`)."""
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
                **tcp_liveness(dead_after),
            },
        )
    return create_engine(parsed, pool_size=2, max_overflow=1, pool_pre_ping=True)
