"""The advice as text for a terminal and as JSON for scripts. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from impactwatch.catalog.durations import format_duration
from impactwatch.pools.advice import PoolAdvice


def _wait(seconds: float) -> str:
    return format_duration(seconds) if seconds >= 1 else "0s"


def _day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M")


def advice_text(
    advices: Sequence[PoolAdvice], since: float, until: float, tz: str, currency: str
) -> str:
    """Per pool: its windows with size, effect per week and reason, then the pool's totals."""
    lines = [
        f"Pool advice from {_day(since)} to {_day(until)} UTC "
        f"({(until - since) / 604800:.1f} weeks); windows in {tz}; effects per week "
        "(queue wait of SLA-bearing pipelines' tasks, replayed)."
    ]
    if not advices:
        lines.append("No task tries with a pool in that window: nothing to advise.")
    for a in advices:
        known = (
            f"{a.configured} slots configured"
            if a.configured is not None
            else (f"configured size unknown: compared with a static {a.static} (the peak need)")
        )
        lines += ["", f"pool {a.pool}: {known}"]
        lines.append(
            f"  {'window':<24} {'slots':>5}  {'wait saved':>10}  {'slot h':>7}  {'cost':>9}  reason"
        )
        for w in a.windows:
            lines.append(
                f"  {w.label():<24} {w.slots:>5}  {_wait(w.wait_saved):>10}  "
                f"{-w.slot_hours_freed:>+7.0f}  {_money(w.cost_difference):>9}  {w.reason}"
            )
        s, v = a.static_effect, a.advised_effect
        lines.append(
            f"  per week: critical queue wait {_wait(s.critical_wait)} -> {_wait(v.critical_wait)}"
            f", SLA-bearing {_wait(s.sla_wait)} -> {_wait(v.sla_wait)}; slot hours "
            f"{s.slot_hours:.0f} -> {v.slot_hours:.0f}; cost {_money(a.cost_difference)} "
            f"{currency} ({_money(a.slot_hour_cost, 4, sign=False)} a slot hour)"
        )
    return "\n".join(lines)


def _money(amount: Decimal, places: int = 2, sign: bool = True) -> str:
    return f"{amount:{'+' if sign else ''}.{places}f}"


def advice_json(advices: Sequence[PoolAdvice], since: float, until: float, tz: str) -> Any:
    return {
        "since": since,
        "until": until,
        "timezone": tz,
        "pools": [
            {
                "pool": a.pool,
                "configured": a.configured,
                "static": a.static,
                "slot_hour_cost": str(a.slot_hour_cost),
                "slots_by_hour_of_week": list(a.slots),
                "windows": [
                    {
                        "days": w.days,
                        "start_hour": w.span.start,
                        "end_hour": w.span.end,
                        "slots": w.slots,
                        "reason": w.reason,
                        "sla_wait_saved_seconds_per_week": round(w.wait_saved, 3),
                        "critical_wait_saved_seconds_per_week": round(
                            w.static.critical_wait - w.advised.critical_wait, 3
                        ),
                        "slot_hours_freed_per_week": w.slot_hours_freed,
                        "cost_difference_per_week": str(w.cost_difference),
                    }
                    for w in a.windows
                ],
            }
            for a in advices
        ],
    }
