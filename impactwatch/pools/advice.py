"""Pool sizes by time window from measured usage, each with its reason and expected effect. Pure.

Method (docs/pools.md): an hour needs the fewest slots that would have served all its demand
for most of its time (95% for critical pipelines, 90% SLA-bearing, 75% the rest: `coverages`),
taken over the weeks of the window at a quantile set by the most important pipeline with
demand in that hour (critical: the busiest week; SLA-bearing: the 3rd quartile; the rest: the
median week). The
needs of the days of one kind (weekdays, weekends) are folded into one day by their maximum and
cut into a few windows (`windows.cut_day`). The effect is the replay (`replay.replay`) of the
window's tries under the configured size and under the advice, and the slot hours between them
at the catalog's price of a slot hour.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from impactwatch.catalog.model import Catalog
from impactwatch.collector.cost.pricing import Pricing
from impactwatch.pools.replay import replay
from impactwatch.pools.usage import (
    CLASS_NAMES,
    COVERAGES,
    CRITICAL,
    HOUR,
    HOURS_PER_WEEK,
    SLA_BEARING,
    STANDARD,
    WEEK,
    HourOfWeek,
    PoolTry,
    PoolUsage,
    how_name,
    usage_by_pool,
)
from impactwatch.pools.windows import Span, cut_day

DAY_KINDS: dict[str, tuple[int, ...]] = {"weekdays": (0, 1, 2, 3, 4), "weekends": (5, 6)}
EVERY_DAY = "every day"


@dataclass(frozen=True)
class AdviceSettings:
    """How advice is made; every default is documented in docs/pools.md."""

    max_windows: int = 4  # per kind of day
    min_slots: int = 1  # a pool of 0 slots runs nothing
    coverages: tuple[float, float, float] = COVERAGES  # standard, SLA-bearing, critical
    quantiles: Mapping[int, float] = field(
        default_factory=lambda: {STANDARD: 0.5, SLA_BEARING: 0.75, CRITICAL: 1.0}
    )

    def __post_init__(self) -> None:
        if self.max_windows < 1:
            raise ValueError("max_windows must be at least 1")
        if self.min_slots < 1:
            raise ValueError("min_slots must be at least 1: a pool of 0 slots runs nothing")
        for q in (*self.quantiles.values(), *self.coverages):
            if not 0 < q <= 1:
                raise ValueError(f"quantile and coverage {q} must be in (0, 1]")


@dataclass(frozen=True)
class Effect:
    """Expected effect per week of history: queue wait (s) of SLA-bearing pipelines' tries, of
    critical ones, slot hours provided, all replayed under one schedule."""

    sla_wait: float = 0.0
    critical_wait: float = 0.0
    slot_hours: float = 0.0

    def __add__(self, other: Effect) -> Effect:
        return Effect(
            self.sla_wait + other.sla_wait,
            self.critical_wait + other.critical_wait,
            self.slot_hours + other.slot_hours,
        )


@dataclass(frozen=True)
class Window:
    """A size for some hours of some days, why, and what it changes against the static size."""

    days: str  # "weekdays", "weekends" or "every day"
    span: Span
    reason: str
    static: Effect
    advised: Effect
    cost_difference: Decimal  # per week, advised minus static; negative is a saving

    @property
    def slots(self) -> int:
        return self.span.slots

    @property
    def wait_saved(self) -> float:
        return self.static.sla_wait - self.advised.sla_wait

    @property
    def slot_hours_freed(self) -> float:
        return self.static.slot_hours - self.advised.slot_hours

    def label(self) -> str:
        return f"{self.days} {self.span.label()}"


@dataclass(frozen=True)
class PoolAdvice:
    pool: str
    configured: int | None  # Airflow's size now; None when not known
    static: int  # the size the advice is compared with: configured, else the peak need
    slots: tuple[int, ...]  # advised size by hour of week
    windows: tuple[Window, ...]
    weeks: float  # weeks of history the effects are averaged over
    slot_hour_cost: Decimal
    running: tuple[float, ...] = ()  # mean slots running by hour of week over the history
    queued: tuple[float, ...] = ()  # mean slots queued by hour of week

    @property
    def static_effect(self) -> Effect:
        return sum((w.static for w in self.windows), Effect())

    @property
    def advised_effect(self) -> Effect:
        return sum((w.advised for w in self.windows), Effect())

    @property
    def cost_difference(self) -> Decimal:
        return sum((w.cost_difference for w in self.windows), Decimal(0))

    def slots_at(self, ts: float, hours: HourOfWeek) -> int:
        return self.slots[hours(int(ts // HOUR))]

    def window_at(self, ts: float, hours: HourOfWeek) -> Window:
        how = hours(int(ts // HOUR))
        for w in self.windows:
            if how // 24 in _days(w.days) and how % 24 in w.span.hours:
                return w
        raise LookupError(f"no window covers {how_name(how)}")  # the windows cover the week


def pipeline_classes(catalog: Catalog) -> dict[str, int]:
    """Each DAG's weight class: critical tier (its own or a product's it makes), SLA-bearing
    (a deadline, a duration limit, or a product with a freshness limit), else standard."""
    classes: dict[str, int] = {}

    def lift(dag_id: str, cls: int) -> None:
        classes[dag_id] = max(classes.get(dag_id, STANDARD), cls)

    for dag_id, p in catalog.pipelines.items():
        if p.tier == "critical":
            lift(dag_id, CRITICAL)
        elif p.deadline is not None or p.max_duration is not None:
            lift(dag_id, SLA_BEARING)
    for d in catalog.datasets.values():
        if d.produced_by is None or d.produced_by.dag_id is None:
            continue
        if d.tier == "critical":
            lift(d.produced_by.dag_id, CRITICAL)
        elif d.freshness is not None:
            lift(d.produced_by.dag_id, SLA_BEARING)
    return classes


def slot_hour_cost(catalog: Catalog, pool: str, rates_cpu: Decimal, rates_mem: Decimal) -> Decimal:
    """Price of one slot of `pool` for an hour: its declared resources at the given rates."""
    res = catalog.cost.resources_for_pool(pool)
    return res.cpu * rates_cpu + res.memory_gb * rates_mem


def needs(usage: PoolUsage, settings: AdviceSettings) -> list[int]:
    """Slots each hour of week needs: its weekly needs at its weight class's quantile."""
    out = []
    least, quantiles = settings.min_slots, settings.quantiles
    for weight, levels in zip(usage.weight, usage.levels, strict=True):
        if not levels:
            out.append(least)
            continue
        weekly = sorted([level.needs[weight] for level in levels])
        rank = max(math.ceil(quantiles[weight] * len(weekly)) - 1, 0)
        need = weekly[rank]
        out.append(need if need > least else least)
    return out


def schedule(need: Sequence[int], settings: AdviceSettings) -> list[tuple[str, Span]]:
    """Windows by kind of day; one set for every day when weekdays and weekends agree."""
    cut = {
        kind: cut_day(
            [max(need[d * 24 + h] for d in days) for h in range(24)], settings.max_windows
        )
        for kind, days in DAY_KINDS.items()
    }
    if cut["weekdays"] == cut["weekends"]:
        return [(EVERY_DAY, s) for s in cut["weekdays"]]
    return [(kind, s) for kind, spans in cut.items() for s in spans]


def _days(kind: str) -> tuple[int, ...]:
    return tuple(range(7)) if kind == EVERY_DAY else DAY_KINDS[kind]


def advise_pool(
    usage: PoolUsage,
    tries: Sequence[PoolTry],
    *,
    configured: int | None,
    cost: Decimal,
    classes: Mapping[str, int],
    hours: HourOfWeek,
    since: float,
    until: float,
    settings: AdviceSettings,
) -> PoolAdvice:
    """The advice for one pool from its usage and its tries over `[since, until)`."""
    need = needs(usage, settings)
    windows = schedule(need, settings)
    slots = [0] * HOURS_PER_WEEK
    for kind, span in windows:
        span_hours = span.hours
        for d in _days(kind):
            for h in span_hours:
                slots[d * 24 + h] = span.slots
    static = configured if configured is not None else max(need)
    weeks = (until - since) / WEEK
    in_window = [t for t in tries if since <= t.queued < until]
    before = replay(in_window, [static] * HOURS_PER_WEEK, hours)
    after = replay(in_window, slots, hours)
    first = math.floor(since / HOUR)
    how_at = hours.span(first, math.ceil(until / HOUR))
    by_how: dict[int, list[tuple[int, float, float]]] = {}  # hour of week -> (class, waits)
    get_class = classes.get
    for t, b, a in zip(in_window, before, after, strict=True):
        row = (get_class(t.dag_id, STANDARD), b, a)
        by_how.setdefault(how_at[int(t.queued // HOUR) - first], []).append(row)
    out = []
    for kind, span in windows:
        span_hours = span.hours
        hows = [d * 24 + h for d in _days(kind) for h in span_hours]
        covered = sum(usage.weeks[h] for h in hows) / weeks if weeks else 0.0
        rows = [row for h in hows for row in by_how.get(h, ())]
        eff_static = _effect(rows, 1, static * covered, weeks)
        eff_advised = _effect(rows, 2, span.slots * covered, weeks)
        diff = Decimal(str(round(eff_advised.slot_hours - eff_static.slot_hours, 6))) * cost
        reason = _reason(
            usage, hows, span.slots, static, configured is not None, need, settings.coverages
        )
        out.append(Window(kind, span, reason, eff_static, eff_advised, diff))
    return PoolAdvice(
        pool=usage.pool,
        configured=configured,
        static=static,
        slots=tuple(slots),
        windows=tuple(out),
        weeks=weeks,
        slot_hour_cost=cost,
        running=tuple(usage.mean_running(h) for h in range(HOURS_PER_WEEK)),
        queued=tuple(usage.mean_queued(h) for h in range(HOURS_PER_WEEK)),
    )


def _effect(
    rows: Sequence[tuple[int, float, float]], column: int, slot_hours: float, weeks: float
) -> Effect:
    """`rows`: each try's weight class and its replayed waits (static, advised)."""
    sla = crit = 0.0
    for row in rows:
        cls = row[0]
        if cls >= SLA_BEARING:
            wait = row[column]
            sla += wait
            if cls == CRITICAL:
                crit += wait
    per = 1 / weeks if weeks else 0.0
    return Effect(sla * per, crit * per, slot_hours)


def _reason(
    usage: PoolUsage,
    hows: Sequence[int],
    slots: int,
    static: int,
    known: bool,
    need: Sequence[int],
    coverages: Sequence[float],
) -> str:
    """Why this size, in words."""
    busiest = max(hows, key=lambda h: (need[h], usage.mean_running(h)))
    mean = sum(usage.mean_running(h) for h in hows) / len(hows)
    weight = max(usage.weight[h] for h in hows)
    critical = sorted(set().union(*(usage.critical[h] for h in hows)))
    basis = {
        CRITICAL: "the busiest week, for critical pipelines",
        SLA_BEARING: "the 3rd-busiest quarter of weeks, for SLA-bearing pipelines",
        STANDARD: "a typical (median) week",
    }[weight]
    what = "configured" if known else "at the peak need (configured size unknown)"
    peak = max((level.peak for level in usage.levels[busiest]), default=0)
    share = coverages[weight]
    if slots > static:
        text = (
            f"busy: {slots} slots served all demand {share:.0%} of the time "
            f"(up to {peak} tasks wanted the pool at once, {how_name(busiest)}), "
            f"{static} slots {what}"
        )
    elif slots < static:
        text = (
            f"quiet: {slots} slots served all demand {share:.0%} of the time, "
            f"{mean:.1f} were used on average; {static - slots} of {static} slots {what} "
            "would sit idle"
        )
    else:
        text = (
            f"fits: {slots} slots served all demand {share:.0%} of the time, "
            f"{mean:.1f} were used on average"
        )
    text += f"; sized for {basis}"
    if critical:
        shown = ", ".join(critical[:3]) + (f" and {len(critical) - 3} more" if critical[3:] else "")
        text += f" ({CLASS_NAMES[CRITICAL]}: {shown})"
    return text


def advise_all(
    tries: Iterable[PoolTry],
    catalog: Catalog,
    *,
    configured: Mapping[str, int],
    since: float,
    until: float,
    hours: HourOfWeek,
    settings: AdviceSettings,
) -> list[PoolAdvice]:
    """Advice for every pool with tries in the window, by pool name."""
    classes = pipeline_classes(catalog)
    by_pool: dict[str, list[PoolTry]] = {}
    for t in tries:
        by_pool.setdefault(t.pool, []).append(t)
    usage = usage_by_pool(by_pool, since, until, classes, hours, settings.coverages)
    pricing = Pricing(catalog)
    out = []
    for pool, u in usage.items():
        rates = pricing.rates(None, pool)
        out.append(
            advise_pool(
                u,
                by_pool[pool],
                configured=configured.get(pool),
                cost=slot_hour_cost(catalog, pool, rates.cpu_hour, rates.memory_gb_hour),
                classes=classes,
                hours=hours,
                since=since,
                until=until,
                settings=settings,
            )
        )
    return out
