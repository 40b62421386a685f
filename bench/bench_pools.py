"""Pool advice benchmark (issue 16): does the advised schedule beat the static sizes, and how
long does advice take at 1,000 pools? No Airflow needed.

- effect: the article's pattern with contention (tests/support/pool_history.py: heavy ETL at
  night with a critical pipeline due 06:00, API calls and light transforms in business hours,
  run under the article's static sizes 4 / 8 / 10). Advice from weeks 1-4 (read back from a
  SQLite state DB, as `impactwatch pools advise` does), then week 5, a week the advice never
  saw, replayed under the static sizes and under the advice (impactwatch/pools/replay.py).
  Target: critical pipelines' total queue wait cut >= 50% at no more slot hours (or the same
  wait at >= 30% fewer slot hours).
- scale: advice for 1,000 pools (each with one of the three pools' loads at --scale x its
  rate) over 4 weeks of history: `advise_all` (usage, windows, two replays per pool). Target
  < 5 s. The state DB read is timed beside it.

    .venv/bin/python bench/bench_pools.py                     # ~1 min
    .venv/bin/python bench/bench_pools.py --pools 1000 --scale 0.05
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.support

import report

from impactwatch.catalog.durations import format_duration
from impactwatch.catalog.model import Catalog
from impactwatch.collector.state.schema import create_or_upgrade, make_engine
from impactwatch.pools.advice import AdviceSettings, advise_all, pipeline_classes
from impactwatch.pools.history import read_pool_tries
from impactwatch.pools.replay import replay, slot_hours
from impactwatch.pools.usage import CRITICAL, HOURS_PER_WEEK, WEEK, HourOfWeek
from tests.support import pool_history as ph

HOURS = HourOfWeek()


def effect(seed: int, folder: Path) -> tuple[list[list[object]], bool]:
    catalog = Catalog.model_validate(ph.CATALOG)
    demand = ph.arrivals(5, seed)
    history = ph.under_static(demand, ph.STATIC)
    since, until = ph.MONDAY, ph.MONDAY + 4 * WEEK
    engine = make_engine(f"sqlite:///{folder / 'state.db'}")
    create_or_upgrade(engine)
    ph.store(engine, [t for t in history if t.queued < until])
    tries = list(read_pool_tries(engine, since, until))
    engine.dispose()
    advice = advise_all(
        tries,
        catalog,
        configured=ph.STATIC,
        since=since,
        until=until,
        hours=HOURS,
        settings=AdviceSettings(),
    )
    classes = pipeline_classes(catalog)
    held_out = [t for t in demand if until <= t.queued < until + WEEK]
    rows: list[list[object]] = []
    totals = {"static": [0.0, 0.0, 0.0], "advised": [0.0, 0.0, 0.0]}
    for a in advice:
        week = [t for t in held_out if t.pool == a.pool]
        for name, sizes in (("static", [ph.STATIC[a.pool]] * HOURS_PER_WEEK), ("advised", a.slots)):
            waits = replay(week, sizes, HOURS)
            crit = sum(
                w for t, w in zip(week, waits, strict=True) if classes.get(t.dag_id) == CRITICAL
            )
            allw = sum(waits)
            hours = slot_hours(sizes, until, until + WEEK, HOURS)
            totals[name][0] += crit
            totals[name][1] += allw
            totals[name][2] += hours
            rows.append(
                [a.pool, name, format_duration(crit), format_duration(allw), f"{hours:.0f}"]
            )
    s, v = totals["static"], totals["advised"]
    cut = 1 - v[0] / s[0] if s[0] else 0.0
    fewer = 1 - v[2] / s[2]
    rows.append(["all", "static", format_duration(s[0]), format_duration(s[1]), f"{s[2]:.0f}"])
    rows.append(["all", "advised", format_duration(v[0]), format_duration(v[1]), f"{v[2]:.0f}"])
    ok = (cut >= 0.5 and v[2] <= s[2]) or (v[0] <= s[0] and fewer >= 0.3)
    rows.append(
        [
            "result",
            f"critical wait cut {cut:.0%}, slot hours {-fewer:+.0%}",
            "target: cut >= 50% at <= slot hours",
            "(or same wait at >= 30% fewer)",
            "PASS" if ok else "FAIL",
        ]
    )
    return rows, ok


def scale(pools: int, factor: float, seed: int, folder: Path) -> tuple[list[list[object]], bool]:
    catalog = Catalog.model_validate(ph.CATALOG)
    history = ph.many_pools(pools, 4, seed, factor)
    since, until = ph.MONDAY, ph.MONDAY + 4 * WEEK
    engine = make_engine(f"sqlite:///{folder / 'scale.db'}")
    create_or_upgrade(engine)
    ph.store(engine, history)
    started = time.perf_counter()
    tries = list(read_pool_tries(engine, since, until))
    read = time.perf_counter() - started
    engine.dispose()
    started, cpu = time.perf_counter(), time.process_time()
    advice = advise_all(
        tries,
        catalog,
        configured={},
        since=since,
        until=until,
        hours=HOURS,
        settings=AdviceSettings(),
    )
    took, cpu = time.perf_counter() - started, time.process_time() - cpu
    ok = took < 5.0 and len(advice) == pools
    rows: list[list[object]] = [
        ["pools advised", len(advice), f"{pools}", ""],
        ["task tries (4 weeks)", f"{len(tries):,}", "", ""],
        ["advice (usage, windows, replays)", f"{took:.2f} s", "< 5 s", "PASS" if ok else "FAIL"],
        ["  of which this process's CPU", f"{cpu:.2f} s", "(others share the CPU)", ""],
        ["state DB read (SQLite)", f"{read:.2f} s", "(not in the target)", ""],
    ]
    return rows, ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pools", type=int, default=1000)
    parser.add_argument("--scale", type=float, default=0.05, help="x each load's rate (scale)")
    parser.add_argument("--seed", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rows, ok_effect = effect(args.seed, folder)
        print(
            report.table(
                "Held-out week replayed: static sizes vs advice from the 4 weeks before",
                ["pool", "sizes", "critical wait", "all wait", "slot hours"],
                rows,
            )
        )
        print()
        rows, ok_scale = scale(args.pools, args.scale, args.seed, folder)
        print(report.table("Advice at scale", ["what", "figure", "target", "verdict"], rows))
    return 0 if ok_effect and ok_scale else 1


if __name__ == "__main__":
    raise SystemExit(main())
