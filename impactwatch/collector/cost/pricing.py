"""What task tries and runs cost: resources x duration x rates, in Decimal. Pure: no I/O.

Resources of a try, first that applies (each of CPU and memory on its own, so a request that
names only CPU takes its memory from the next level down):

1. measured by the listener (CPU seconds, peak RSS of the task process), when the pipeline's
   `cost_basis` is `measured` (the default); `reserved` pipelines skip this level;
2. declared in the catalog for the task (`cost.tasks`, "dag_id.task_id"), then for its pool
   (`cost.pools`);
3. requested in the task's `executor_config` (Kubernetes resource requests, sent by the
   listener);
4. `cost.default_resources`.

Measured: CPU-hours used x the CPU rate + peak memory x wall hours x the memory rate. Otherwise:
(cores x CPU rate + GiB x memory rate) x wall hours. Rates: the task's queue's, else its pool's,
else `cost.rates`; an instance type's rates split its hourly price between its vCPUs and memory
(`instance_rates`). Every try counts (retries, mapped instances); a run costs the sum of its
tries. Amounts are never rounded here: `money` rounds for display, floats appear only at export.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Literal

from impactwatch.catalog.model import Catalog, InstanceType, Rates
from impactwatch.collector.events import TaskTry

log = logging.getLogger(__name__)

HOUR = Decimal(3600)
GIB = Decimal(1024**3)
ZERO = Decimal(0)
CENT = Decimal("0.01")

Source = Literal["measured", "task", "pool", "requested", "default"]


def money(amount: Decimal, places: Decimal = CENT) -> Decimal:
    """`amount` rounded for people (half up, to the cent by default): only at the edges."""
    return amount.quantize(places, rounding=ROUND_HALF_UP)


def decimal_of(value: float | int) -> Decimal:
    """A float as the Decimal it prints as (0.1 -> Decimal("0.1"), not 0.1000000000000000055)."""
    return Decimal(repr(float(value))) if isinstance(value, float) else Decimal(value)


def instance_rates(instance: InstanceType, base: Rates) -> Rates | None:
    """Rates that charge a task using the whole instance exactly its hourly price.

    The price P of an instance with V vCPUs and M GiB is split between CPU and memory: by
    `cpu_share` when given (cpu_hour = P x share / V, memory_gb_hour = P x (1 - share) / M),
    else in the proportion of the base rates (cpu_hour = k x base.cpu_hour, memory_gb_hour =
    k x base.memory_gb_hour, with k = P / (V x base.cpu_hour + M x base.memory_gb_hour)): the
    shipped base rates are about 9:1 per vCPU-hour and GiB-hour, as Fargate's prices are.
    None when EC2 has not told its vCPUs and memory yet.
    """
    if instance.vcpus is None or instance.memory_gb is None:
        return None
    price, cpus, memory = instance.hourly_price, instance.vcpus, instance.memory_gb
    share = instance.cpu_share
    weight = cpus * base.cpu_hour + memory * base.memory_gb_hour
    if share is None and weight == 0:
        share = Decimal("0.5")  # free base rates say nothing about the split: halve it
    if share is not None:
        return Rates(cpu_hour=price * share / cpus, memory_gb_hour=price * (1 - share) / memory)
    factor = price / weight
    return Rates(cpu_hour=base.cpu_hour * factor, memory_gb_hour=base.memory_gb_hour * factor)


@dataclass(frozen=True, slots=True)
class TryCost:
    """One try's cost and where its resources came from (see the module's precedence)."""

    task_id: str
    amount: Decimal
    source: Source


@dataclass(frozen=True, slots=True)
class Usage:
    """Tries summed where pricing cannot tell them apart (same DAG, pool, queue, requests,
    measured or not; `task_id` only for tasks `cost.tasks` declares, else ""): the state DB
    adds them up, so history and reconciliation price thousands of rows, not millions."""

    dag_id: str
    task_id: str
    pool: str | None
    queue: str | None
    requested_cpu: float | None
    requested_memory_bytes: float | None
    measured: bool  # the listener measured them (cpu_seconds known)
    seconds: float  # wall seconds
    cpu_seconds: float
    byte_seconds: float  # peak RSS x wall seconds


def wall_seconds(t: TaskTry) -> Decimal:
    """How long the try ran: its duration, else end minus start, else 0."""
    if t.duration is not None:
        return decimal_of(max(t.duration, 0.0))
    if t.start is not None and t.end is not None:
        return decimal_of(max(t.end - t.start, 0.0))
    return ZERO


class Pricing:
    """A catalog's cost model made ready to price tries: rates per (queue, pool) resolved once.

    Build one per catalog (`MetricsState.set_catalog` does) and reuse it.
    """

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.model = catalog.cost
        self._rates: dict[tuple[str | None, str | None], Rates] = {}
        self.unresolved = sorted(
            name
            for name in self._instance_types_used()
            if name in self.model.instance_types and not self.model.instance_types[name].resolved
        )
        if self.unresolved:
            log.warning(
                "cost: vCPUs and memory of instance type(s) %s unknown (EC2 not asked or not "
                "answering): their pools and queues use cost.rates; write vcpus: and "
                "memory_gb: in the catalog to price them offline",
                ", ".join(self.unresolved),
            )

    def _instance_types_used(self) -> set[str]:
        choices = [*self.model.pool_rates.values(), *self.model.queue_rates.values()]
        return {c.instance_type for c in choices if c.instance_type is not None}

    def rates(self, queue: str | None, pool: str | None) -> Rates:
        """Rates of a task in `queue` and `pool` (see `CostModel.rate_choice`)."""
        key = (queue, pool)
        found = self._rates.get(key)
        if found is None:
            found = self._resolve(queue, pool)
            self._rates[key] = found
        return found

    def _resolve(self, queue: str | None, pool: str | None) -> Rates:
        base = self.model.rates
        choice = self.model.rate_choice(queue, pool)
        if choice is None:
            return base
        if choice.instance_type is None:
            return Rates(cpu_hour=choice.cpu_hour, memory_gb_hour=choice.memory_gb_hour)
        instance = self.model.instance_types.get(choice.instance_type)
        derived = instance_rates(instance, base) if instance is not None else None
        return derived if derived is not None else base

    def basis(self, dag_id: str) -> str:
        pipeline = self.catalog.pipelines.get(dag_id)
        return pipeline.cost_basis if pipeline is not None else "measured"

    def reserved_resources(self, t: TaskTry) -> tuple[Decimal, Decimal, Source]:
        """(cores, GiB, source) a try held: declared, else requested, else default (levels
        2-4 of the module's precedence, CPU and memory each on their own)."""
        return self._held(t.dag_id, t.task_id, t.pool, t.requested_cpu, t.requested_memory_bytes)

    def _held(
        self,
        dag_id: str,
        task_id: str,
        pool: str | None,
        requested_cpu: float | None,
        requested_memory_bytes: float | None,
    ) -> tuple[Decimal, Decimal, Source]:
        model = self.model
        declared = model.tasks.get(f"{dag_id}.{task_id}")
        if declared is not None:
            return declared.cpu, declared.memory_gb, "task"
        if pool is not None and (declared := model.pools.get(pool)) is not None:
            return declared.cpu, declared.memory_gb, "pool"
        default = model.default_resources
        cpu = decimal_of(requested_cpu) if requested_cpu is not None else None
        memory = (
            decimal_of(requested_memory_bytes) / GIB if requested_memory_bytes is not None else None
        )
        if cpu is None and memory is None:
            return default.cpu, default.memory_gb, "default"
        return (
            cpu if cpu is not None else default.cpu,
            memory if memory is not None else default.memory_gb,
            "requested",
        )

    # Multiply first, divide once at the end: exact whenever the true amount has a finite
    # decimal expansion (480 s at $3.6/h is $0.48, not 0.4799...).
    @staticmethod
    def _used(rates: Rates, cpu_seconds: Decimal, byte_seconds: Decimal) -> Decimal:
        return (cpu_seconds * rates.cpu_hour + byte_seconds * rates.memory_gb_hour / GIB) / HOUR

    @staticmethod
    def _reserved(rates: Rates, seconds: Decimal, cpu: Decimal, memory: Decimal) -> Decimal:
        return seconds * (cpu * rates.cpu_hour + memory * rates.memory_gb_hour) / HOUR

    def price(self, t: TaskTry) -> TryCost:
        """The cost of one task try in the catalog's currency, unrounded."""
        rates = self.rates(t.queue, t.pool)
        seconds = wall_seconds(t)
        if self.basis(t.dag_id) == "measured" and t.cpu_seconds is not None:
            cpu_seconds = decimal_of(max(t.cpu_seconds, 0.0))
            byte_seconds = Decimal(max(t.peak_rss_bytes or 0, 0)) * seconds
            return TryCost(t.task_id, self._used(rates, cpu_seconds, byte_seconds), "measured")
        cpu, memory, source = self.reserved_resources(t)
        return TryCost(t.task_id, self._reserved(rates, seconds, cpu, memory), source)

    def price_usage(self, u: Usage) -> Decimal:
        """What tries summed into `u` cost: the sum of their `price`s (up to float sums)."""
        rates = self.rates(u.queue, u.pool)
        if self.basis(u.dag_id) == "measured" and u.measured:
            return self._used(rates, decimal_of(u.cpu_seconds), decimal_of(u.byte_seconds))
        cpu, memory, _source = self._held(
            u.dag_id, u.task_id, u.pool, u.requested_cpu, u.requested_memory_bytes
        )
        return self._reserved(rates, decimal_of(u.seconds), cpu, memory)

    def run_cost(self, tries: Iterable[TaskTry]) -> Decimal:
        """A run costs the sum of all its task tries."""
        return sum((self.price(t).amount for t in tries), ZERO)

    def task_costs(self, tries: Iterable[TaskTry]) -> dict[str, Decimal]:
        """Cost per task id: every try and every map index of the task summed."""
        costs: dict[str, Decimal] = {}
        for t in tries:
            costs[t.task_id] = costs.get(t.task_id, ZERO) + self.price(t).amount
        return costs

    def cost_by_day(self, tries: Iterable[TaskTry]) -> dict[date, Decimal]:
        """Cost per UTC calendar day, each try split across the days it ran on in proportion
        to the seconds it ran on each (as a cloud bill accrues). A try that spans midnight
        counts on both days; one without any time is left out (it cannot be placed)."""
        days: dict[date, Decimal] = {}
        for t in tries:
            amount = self.price(t).amount
            for day, share in day_shares(t):
                days[day] = days.get(day, ZERO) + amount * share
        return days


def day_shares(t: TaskTry) -> list[tuple[date, Decimal]]:
    """(UTC day, share of the try's wall time on it), shares summing to exactly 1."""
    seconds = float(wall_seconds(t))
    end = t.end if t.end is not None else (t.start + seconds if t.start is not None else None)
    if end is None:
        return []
    start = t.start if t.start is not None else end - seconds
    first = _utc_day(start)
    last = _utc_day(max(end, start))
    if first == last or end <= start:
        return [(last, Decimal(1))]
    total = decimal_of(end - start)
    shares: list[tuple[date, Decimal]] = []
    day, given = first, ZERO
    while day < last:
        midnight = datetime.combine(day + timedelta(days=1), datetime.min.time(), UTC)
        cut = min(midnight.timestamp(), end)
        begin = max(start, datetime.combine(day, datetime.min.time(), UTC).timestamp())
        share = decimal_of(cut - begin) / total
        shares.append((day, share))
        given += share
        day += timedelta(days=1)
    shares.append((last, 1 - given))  # the remainder: shares sum to exactly 1
    return shares


def _utc_day(ts: float) -> date:
    return datetime.fromtimestamp(ts, UTC).date()


def median(values: Iterable[Decimal]) -> Decimal | None:
    """The median (mean of the two middle values for an even count), None when empty."""
    ordered = sorted(values)
    if not ordered:
        return None
    mid = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[mid]
    return (ordered[mid - 1] + ordered[mid]) / 2


_last: tuple[Catalog, Pricing] | None = None


def pricing_for(catalog: Catalog) -> Pricing:
    """The `Pricing` of `catalog`, reused while the same catalog object is asked about."""
    global _last
    last = _last
    if last is not None and last[0] is catalog:
        return last[1]
    pricing = Pricing(catalog)
    _last = (catalog, pricing)
    return pricing


def try_cost(t: TaskTry, catalog: Catalog) -> Decimal:
    """The cost of one task try in the catalog's currency, unrounded."""
    return pricing_for(catalog).price(t).amount


def run_cost(tries: Iterable[TaskTry], catalog: Catalog) -> Decimal:
    """A run costs the sum of all its task tries."""
    return pricing_for(catalog).run_cost(tries)
