"""psycopg's asyncio connection behind the few DBAPI calls the store's write path makes.

The intake writes PostgreSQL groups on its event loop (`intake_server.py`). On a thread, each
wait for PostgreSQL gave the GIL to the loop, and taking it back cost a turn of the loop: a
group of 13 requests took 4.3 ms under load against 2.5 ms alone (bench/README.md). So the
store's synchronous write code (`Store._write_group`) runs in a greenlet
(`sqlalchemy.util.greenlet_spawn`, how SQLAlchemy's asyncio extension runs its own sync core),
on this connection. Each call awaits psycopg's coroutine through `await_`, so the loop serves
other connections while PostgreSQL works.

This is SQLAlchemy's own technique (its `AsyncAdapt_psycopg_*` classes) cut to what the write
path needs. It adds `prepare=False`, which SQLAlchemy's adapter cannot pass to psycopg (see
state_writes.py for why the reads need it).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import psycopg
from sqlalchemy.util.concurrency import await_


class LoopCursor:
    def __init__(self, cursor: psycopg.AsyncCursor[Any]) -> None:
        self._cursor = cursor

    def execute(self, sql: str, params: Any = None, **run: Any) -> None:
        await_(self._cursor.execute(sql, params, **run))

    def executemany(self, sql: str, params: Iterable[Any]) -> None:
        await_(self._cursor.executemany(sql, params))

    def fetchall(self) -> Sequence[Any]:
        return await_(self._cursor.fetchall())

    def close(self) -> None:
        await_(self._cursor.close())


class LoopConnection:
    """What `Store._transaction` uses of a pooled connection: `cursor`, `commit`, `rollback`,
    `invalidate` and `close`, plus `dbapi_connection` (for the dialect's `is_disconnect`)."""

    def __init__(self, connection: psycopg.AsyncConnection[Any]) -> None:
        self.dbapi_connection = connection

    @classmethod
    def open(cls, connect_args: dict[str, Any]) -> LoopConnection:
        """A new connection (in a greenlet on the loop), as the engine would make it."""
        return cls(await_(psycopg.AsyncConnection.connect(**connect_args)))

    def cursor(self) -> LoopCursor:
        return LoopCursor(self.dbapi_connection.cursor())

    def commit(self) -> None:
        await_(self.dbapi_connection.commit())

    def rollback(self) -> None:
        await_(self.dbapi_connection.rollback())

    def close(self) -> None:
        await_(self.dbapi_connection.close())

    def invalidate(self) -> None:
        """Drop a broken connection without a round trip (its socket is closed)."""
        self.dbapi_connection.pgconn.finish()
