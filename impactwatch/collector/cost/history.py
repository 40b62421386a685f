"""Costs read back from the state DB: each DAG's recent runs, and the tries of given days.

After a restart (or a change to the cost model) the collector re-prices each DAG's latest
finished runs, so the "last run cost" and "median of the previous runs" gauges and the ranking
of its most expensive tasks carry on where they were; `impactwatch cost reconcile` prices the
days it compares with the bill. At 10,000 DAGs that is millions of tries, so the database sums
them first into `Usage` rows (tries that pricing cannot tell apart) and Python prices
thousands of rows: pricing is linear in wall seconds, CPU seconds and memory x seconds.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Engine, and_, case, func, literal, not_, or_, select

from impactwatch.collector.cost.pricing import ZERO, Pricing, Usage
from impactwatch.collector.events import DAG_RUN_TERMINAL, TaskTry
from impactwatch.collector.state.schema import (
    HELD,
    TRY_RECORD,
    dag_run_t,
    task_try,
    task_try_t,
)

_c = task_try_t.c
_RAW_SECONDS = case(
    (_c.duration.is_not(None), _c.duration),
    (and_(_c.start.is_not(None), _c.end_.is_not(None)), _c.end_ - _c.start),
    else_=literal(0.0),
)
_SECONDS = case((_RAW_SECONDS < 0, literal(0.0)), else_=_RAW_SECONDS)
_BEGUN = func.coalesce(_c.start, _c.end_ - _c.duration, _c.end_)


def read_tries(conn: Any, where: ColumnElement[bool]) -> Iterator[tuple[str, TaskTry]]:
    """(run key, try) for every stored try matching `where`."""
    query = select(_c.run_k, *TRY_RECORD).where(where)
    for row in conn.execute(query):
        values = dict(row._mapping)
        yield values.pop("run_k"), task_try(values)


def usages(
    conn: Any,
    where: ColumnElement[bool],
    pricing: Pricing,
    *,
    by: tuple[ColumnElement[Any], ...] = (),
    per_task: bool = False,
) -> Iterator[tuple[tuple[Any, ...], Usage]]:
    """The tries matching `where` summed per `by` and per what pricing tells apart; each with
    its `by` values. `per_task` keeps every task id apart (else only tasks `cost.tasks`
    declares)."""
    declared = sorted(pricing.model.tasks)
    task: ColumnElement[Any] = _c.task_id
    if not per_task:
        named = (_c.dag_id + "." + _c.task_id).in_(declared)
        task = case((named, _c.task_id), else_=literal("")) if declared else literal("")
    measured = case((_c.cpu_seconds.is_(None), 0), else_=1)
    keys = (_c.dag_id, task, _c.pool, _c.queue, _c.requested_cpu, _c.requested_memory_bytes)
    sums = (
        func.sum(_SECONDS),
        func.sum(func.coalesce(_c.cpu_seconds, 0.0)),
        func.sum(func.coalesce(_c.peak_rss_bytes, 0.0) * _SECONDS),
    )
    query = select(*by, *keys, measured, *sums).where(where).group_by(*by, *keys, measured)
    width = len(by)
    for row in conn.execute(query):
        head, (dag_id, task_id, pool, queue, cpu, memory, used, seconds, cpu_s, byte_s) = (
            tuple(row[:width]),
            row[width:],
        )
        yield head, Usage(
            dag_id, task_id, pool, queue, cpu, memory, bool(used), seconds or 0.0, cpu_s or 0.0,
            byte_s or 0.0,
        )  # fmt: skip


RANKING_RUNS = 5
"""Runs per DAG whose task costs rank its tasks at start (every run seen after counts too)."""


@dataclass
class DagHistory:
    """A DAG's recent finished runs' costs (oldest first), and its tasks' cost over the
    RANKING_RUNS latest of them (a ranking read from all 21 would double the time to start)."""

    totals: list[Decimal] = field(default_factory=list)
    ranking: dict[str, Decimal] = field(default_factory=dict)


def cost_history(conn: Any, pricing: Pricing, per_dag: int) -> dict[str, DagHistory]:
    """Each DAG's `per_dag` latest finished runs (by end), priced; tasks ranked by their cost
    over the RANKING_RUNS latest."""
    if per_dag <= 0:
        return {}
    rank = func.row_number().over(partition_by=dag_run_t.c.dag_id, order_by=dag_run_t.c.end_.desc())
    ranked = (
        select(dag_run_t.c.k, dag_run_t.c.dag_id, dag_run_t.c.end_, rank.label("rank"))
        .where(
            dag_run_t.c.state.in_(sorted(DAG_RUN_TERMINAL)),
            dag_run_t.c.end_.is_not(None),
            dag_run_t.c.observed.op("&")(HELD) == 0,  # DAGs Airflow did not know: no series
        )
        .subquery()
    )
    recent = select(ranked).where(ranked.c.rank <= per_dag)
    runs = sorted(conn.execute(recent), key=lambda r: (r[1], r[2]))  # dag, end
    in_recent = _c.run_k.in_(select(ranked.c.k).where(ranked.c.rank <= per_dag))
    in_latest = _c.run_k.in_(select(ranked.c.k).where(ranked.c.rank <= RANKING_RUNS))
    per_run: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for (run_k,), usage in usages(conn, in_recent, pricing, by=(_c.run_k,)):
        per_run[run_k] += pricing.price_usage(usage)
    history: dict[str, DagHistory] = defaultdict(DagHistory)
    for run_k, dag_id, _end, _rank in runs:
        history[dag_id].totals.append(per_run.get(run_k, ZERO))
    for (task_id,), usage in usages(conn, in_latest, pricing, by=(_c.task_id,), per_task=True):
        ranking = history[usage.dag_id].ranking
        ranking[task_id] = ranking.get(task_id, ZERO) + pricing.price_usage(usage)
    return dict(history)


def load_cost_history(engine: Engine, pricing: Pricing, per_dag: int) -> dict[str, DagHistory]:
    """`cost_history` on a connection of its own (for `MetricsState.restore`)."""
    with engine.connect() as conn:
        return cost_history(conn, pricing, per_dag)


def _midnight(day: date) -> float:
    return datetime.combine(day, datetime.min.time(), UTC).timestamp()


def cost_by_dag_and_day(
    engine: Engine, pricing: Pricing, days: Collection[date]
) -> dict[str, dict[date, Decimal]]:
    """What each DAG's tries cost on each of `days` (UTC), a try split across the days it ran
    on as `Pricing.cost_by_day` does. Tries within one day are summed by the database; only
    those crossing a midnight are read one by one."""
    wanted = sorted(set(days))
    out: dict[str, dict[date, Decimal]] = defaultdict(dict)
    if not wanted:
        return {}
    within_a_day = []
    with engine.connect() as conn:
        for day in wanted:
            start, end = _midnight(day), _midnight(day + timedelta(days=1))
            within = and_(start <= _BEGUN, end > _BEGUN, _c.end_ <= end)
            within_a_day.append(within)
            for _, usage in usages(conn, within, pricing):
                costs = out[usage.dag_id]
                costs[day] = costs.get(day, ZERO) + pricing.price_usage(usage)
        first, last = _midnight(wanted[0]), _midnight(wanted[-1] + timedelta(days=1))
        crossing = and_(_c.end_ > first, last > _BEGUN, not_(or_(*within_a_day)))
        for _, t in read_tries(conn, crossing):
            for day, amount in pricing.cost_by_day([t]).items():
                if day in wanted:
                    costs = out[t.dag_id]
                    costs[day] = costs.get(day, ZERO) + amount
    return dict(out)
