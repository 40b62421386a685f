"""Task tries of a time window read from the collector's state DB (SQLAlchemy Core, the
collector's own table objects in impactwatch/collector/state/schema.py).

A try counts when it has a pool, a start and an end; one that was never queued (no `queued`,
e.g. `airflow dags test`) waited nothing. No index covers `start`: this is one scan of
`iw_task_try` per advice, made by a batch job, never by the collector.
"""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import Engine, and_, select

from impactwatch.collector.state.schema import task_try_t
from impactwatch.pools.usage import PoolTry

_c = task_try_t.c
CHUNK = 10_000


def read_pool_tries(
    engine: Engine, since: float, until: float, pools: frozenset[str] | None = None
) -> Iterator[PoolTry]:
    """Every finished try with a pool whose queue or run overlaps `[since, until)`."""
    where = [
        _c.pool.is_not(None),
        _c.start.is_not(None),
        _c.end_.is_not(None),
        _c.end_ >= since,
        _c.start < until,
    ]
    if pools is not None:
        where.append(_c.pool.in_(sorted(pools)))
    query = select(
        _c.pool, _c.dag_id, _c.queued, _c.start, _c.end_, _c.cpu_seconds, _c.peak_rss_bytes
    ).where(and_(*where))
    with engine.connect() as conn:
        result = conn.execution_options(yield_per=CHUNK).execute(query)
        for pool, dag_id, queued, start, end, cpu, rss in result:
            if end < start:
                continue  # a clock step on the worker: no usable interval
            begun = start if queued is None or queued > start else queued
            yield PoolTry(
                pool=pool,
                dag_id=dag_id,
                queued=begun,
                start=start,
                end=end,
                cpu_seconds=cpu,
                peak_rss_bytes=rss,
            )
