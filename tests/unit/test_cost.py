"""The cost model: resource precedence, rates, retries, mapped tasks, Decimal totals, days."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from pydantic import ValidationError

from impactwatch.catalog.model import Catalog, InstanceType, Rates
from impactwatch.collector.cost.pricing import (
    GIB,
    HOUR,
    Pricing,
    day_shares,
    instance_rates,
    median,
    money,
    run_cost,
    try_cost,
)
from impactwatch.collector.events import TaskTry

CPU, MEM = Decimal("0.04"), Decimal("0.005")  # round rates: expected costs stay readable

CATALOG = Catalog.model_validate(
    {
        "pipelines": {"measured_dag": {}, "reserved_dag": {"cost_basis": "reserved"}},
        "cost": {
            "rates": {"cpu_hour": "0.04", "memory_gb_hour": "0.005"},
            "instance_types": {
                "big.2x": {"hourly_price": "0.8", "vcpus": 8, "memory_gb": 32},
                "split.x": {"hourly_price": "1", "vcpus": 4, "memory_gb": 16, "cpu_share": "0.75"},
                "unknown.x": "0.3",
            },
            "pool_rates": {
                "etl": {"instance_type": "big.2x"},
                "written": {"cpu_hour": "0.1", "memory_gb_hour": "0.01"},
                "mystery": {"instance_type": "unknown.x"},
            },
            "queue_rates": {"fast": {"instance_type": "split.x"}},
            "pools": {"etl": {"cpu": 4, "memory_gb": 8}},
            "tasks": {"reserved_dag.big": {"cpu": 8, "memory_gb": 64}},
            "default_resources": {"cpu": 1, "memory_gb": 2},
        },
    }
)
PRICING = Pricing(CATALOG)


def attempt(dag_id: str = "reserved_dag", task_id: str = "t", **kw: object) -> TaskTry:
    kw.setdefault("duration", 3600.0)
    kw.setdefault("try_number", 1)
    map_index = kw.pop("map_index", -1)
    try_number = kw.pop("try_number")
    state = kw.pop("state", "success")
    return TaskTry(
        dag_id=dag_id,
        run_id="r1",
        task_id=task_id,
        map_index=map_index,
        try_number=try_number,
        state=state,
        **kw,
    )  # type: ignore[arg-type]


def close(a: Decimal, b: Decimal) -> bool:
    """Equal to Decimal's 28 digits: a division (1/6 of an hour) cannot be exact."""
    return abs(a - b) < Decimal("1e-20")


def reserved_per_hour(cpu: Decimal, memory: Decimal, cpu_rate=CPU, mem_rate=MEM) -> Decimal:
    return cpu * cpu_rate + memory * mem_rate


# -- precedence of resources -----------------------------------------------------------------
def test_measured_resources_come_first_for_a_measured_pipeline() -> None:
    t = attempt(
        "measured_dag",
        pool="etl",  # declared resources exist too: measurement wins
        queue="default",
        cpu_seconds=1800.0,  # half a CPU-hour
        peak_rss_bytes=2 * 1024**3,  # 2 GiB for the hour
        requested_cpu=16.0,
    )
    cost = PRICING.price(t)
    etl = instance_rates(CATALOG.cost.instance_types["big.2x"], CATALOG.cost.rates)
    assert etl is not None
    assert cost.source == "measured"
    assert close(cost.amount, Decimal("0.5") * etl.cpu_hour + 2 * etl.memory_gb_hour)


def test_a_reserved_pipeline_ignores_the_measurement() -> None:
    measured = attempt("reserved_dag", cpu_seconds=3600.0, peak_rss_bytes=10 * 1024**3)
    cost = PRICING.price(measured)
    assert cost.source == "default"
    assert cost.amount == reserved_per_hour(Decimal(1), Decimal(2))


def test_declared_for_the_task_beats_its_pool_and_its_requests() -> None:
    t = attempt("reserved_dag", "big", pool="etl", requested_cpu=2.0)
    assert PRICING.reserved_resources(t) == (Decimal(8), Decimal(64), "task")


def test_declared_for_the_pool_beats_the_requests() -> None:
    t = attempt("reserved_dag", "other", pool="etl", requested_cpu=2.0)
    assert PRICING.reserved_resources(t) == (Decimal(4), Decimal(8), "pool")


def test_requests_beat_the_default_each_of_cpu_and_memory_on_its_own() -> None:
    both = attempt(requested_cpu=0.5, requested_memory_bytes=3 * 1024**3)
    assert PRICING.reserved_resources(both) == (Decimal("0.5"), Decimal(3), "requested")
    cpu_only = attempt(requested_cpu=0.25)
    assert PRICING.reserved_resources(cpu_only) == (Decimal("0.25"), Decimal(2), "requested")
    memory_only = attempt(requested_memory_bytes=512 * 1024**2)
    assert PRICING.reserved_resources(memory_only) == (Decimal(1), Decimal("0.5"), "requested")


def test_the_default_when_nothing_else_applies_and_measured_pipelines_without_measurement() -> None:
    assert PRICING.reserved_resources(attempt(pool="not_declared")) == (
        Decimal(1),
        Decimal(2),
        "default",
    )
    # a measured pipeline whose listener was away: priced as if reserved
    lost = PRICING.price(attempt("measured_dag", requested_cpu=2.0))
    assert lost.source == "requested"
    assert lost.amount == reserved_per_hour(Decimal(2), Decimal(2))
    # an unknown DAG is measured (the default basis)
    assert PRICING.price(attempt("not_in_catalog", cpu_seconds=36.0)).source == "measured"


# -- rates -------------------------------------------------------------------------------------
def test_rates_queue_then_pool_then_default() -> None:
    fast = PRICING.rates("fast", "etl")  # both named: the queue's
    assert fast == Rates(cpu_hour=Decimal("0.1875"), memory_gb_hour=Decimal("0.015625"))
    assert PRICING.rates("other", "written") == Rates(
        cpu_hour=Decimal("0.1"), memory_gb_hour=Decimal("0.01")
    )
    assert PRICING.rates(None, None) == CATALOG.cost.rates
    assert PRICING.rates("other", "no_rates") == CATALOG.cost.rates


def test_an_instance_type_charges_its_whole_price_to_a_task_that_holds_it_all() -> None:
    for name in ("big.2x", "split.x"):
        instance = CATALOG.cost.instance_types[name]
        rates = instance_rates(instance, CATALOG.cost.rates)
        assert rates is not None and instance.vcpus and instance.memory_gb
        whole = instance.vcpus * rates.cpu_hour + instance.memory_gb * rates.memory_gb_hour
        assert close(whole, instance.hourly_price), name
        assert money(whole) == money(instance.hourly_price)


def test_without_cpu_share_the_split_follows_the_base_rates() -> None:
    rates = instance_rates(CATALOG.cost.instance_types["big.2x"], CATALOG.cost.rates)
    assert rates is not None
    assert close(rates.cpu_hour / rates.memory_gb_hour, CPU / MEM)  # 8:1, as the base rates
    # 8 x 0.04 + 32 x 0.005 = 0.48 at base rates; the instance costs 0.8: everything x 5/3
    assert close(rates.cpu_hour, CPU * 5 / 3) and close(rates.memory_gb_hour, MEM * 5 / 3)


def test_free_base_rates_split_an_instance_evenly() -> None:
    free = Rates(cpu_hour=Decimal(0), memory_gb_hour=Decimal(0))
    rates = instance_rates(InstanceType(hourly_price=Decimal(1), vcpus=2, memory_gb=4), free)
    assert rates == Rates(cpu_hour=Decimal("0.25"), memory_gb_hour=Decimal("0.125"))


def test_an_instance_type_ec2_has_not_described_falls_back_to_the_base_rates() -> None:
    assert PRICING.unresolved == ["unknown.x"]
    assert PRICING.rates(None, "mystery") == CATALOG.cost.rates
    assert instance_rates(CATALOG.cost.instance_types["unknown.x"], CATALOG.cost.rates) is None


# -- every try counts ----------------------------------------------------------------------------
def test_retries_and_mapped_instances_all_count() -> None:
    tries = [
        attempt(task_id="submit", try_number=1, duration=600.0, state="failed"),
        attempt(task_id="submit", try_number=2, duration=1200.0),
        *(attempt(task_id="score", map_index=i, duration=900.0) for i in range(3)),
    ]
    per_hour = reserved_per_hour(Decimal(1), Decimal(2))
    costs = PRICING.task_costs(tries)
    assert set(costs) == {"submit", "score"}
    assert close(costs["submit"], per_hour / 2)  # 10 min failed + 20 min retried
    assert costs["score"] == per_hour * Decimal("0.75")  # 3 map indexes x 15 min
    assert close(PRICING.run_cost(tries), per_hour * Decimal("1.25"))
    assert run_cost(tries, CATALOG) == PRICING.run_cost(tries)  # the module-level helpers agree
    assert close(try_cost(tries[0], CATALOG), per_hour / 6)


def test_a_try_without_duration_uses_end_minus_start_and_without_either_costs_nothing() -> None:
    per_hour = reserved_per_hour(Decimal(1), Decimal(2))
    timed = attempt(duration=None, start=1000.0, end=1000.0 + 1800)
    assert PRICING.price(timed).amount == per_hour / 2
    assert PRICING.price(attempt(duration=None)).amount == 0


# -- money --------------------------------------------------------------------------------------
def test_totals_have_no_float_drift() -> None:
    # 0.1 CPU-hour-equivalents ten times: floats give 0.9999999999999999, Decimal gives 1
    catalog = Catalog.model_validate(
        {
            "cost": {
                "rates": {"cpu_hour": "1", "memory_gb_hour": "0"},
                "default_resources": {"cpu": 1, "memory_gb": 0},
            }
        }
    )
    tries = [attempt("x", f"t{i}", duration=360.0) for i in range(10)]
    assert sum(0.1 for _ in range(10)) != 1.0
    assert Pricing(catalog).run_cost(tries) == Decimal(1)
    thousand = [attempt("x", f"t{i}", duration=0.36) for i in range(1000)]  # $0.0001 each
    assert Pricing(catalog).run_cost(thousand) == Decimal("0.1")


def test_tiny_costs_are_never_rounded_away_before_the_edges() -> None:
    sleeper = attempt("measured_dag", duration=1.0, cpu_seconds=0.01, peak_rss_bytes=100 * 2**20)
    amount = PRICING.price(sleeper).amount
    assert Decimal(0) < amount < Decimal("0.000001")  # well under a micro-dollar, still there
    assert amount == (Decimal("0.01") * CPU + Decimal(100 * 2**20) / GIB * MEM) / HOUR


@pytest.mark.parametrize(
    ("amount", "shown"),
    [("0.005", "0.01"), ("0.015", "0.02"), ("2.675", "2.68"), ("-0.005", "-0.01"), ("1", "1.00")],
)
def test_money_rounds_half_up_to_the_cent(amount: str, shown: str) -> None:
    assert str(money(Decimal(amount))) == shown


# -- days -----------------------------------------------------------------------------------------
def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_a_try_spanning_midnight_is_split_by_the_time_it_ran_on_each_day() -> None:
    t = attempt(start=ts("2026-11-23T23:30:00"), end=ts("2026-11-24T00:30:00"), duration=3600.0)
    assert day_shares(t) == [
        (date(2026, 11, 23), Decimal("0.5")),
        (date(2026, 11, 24), Decimal("0.5")),
    ]
    days = PRICING.cost_by_day(
        [t, attempt(start=ts("2026-11-24T01:00:00"), end=ts("2026-11-24T02:00:00"))]
    )
    per_hour = reserved_per_hour(Decimal(1), Decimal(2))
    assert days == {date(2026, 11, 23): per_hour / 2, date(2026, 11, 24): per_hour * Decimal("1.5")}
    assert sum(days.values()) == 2 * per_hour  # nothing lost or added by the split


def test_a_try_over_several_days_and_odd_shares_still_sum_to_its_cost() -> None:
    t = attempt(
        start=ts("2026-11-22T16:00:00"), end=ts("2026-11-24T08:00:00"), duration=40 * 3600.0
    )
    shares = day_shares(t)
    assert [d for d, _ in shares] == [date(2026, 11, 22), date(2026, 11, 23), date(2026, 11, 24)]
    assert [s for _, s in shares] == [Decimal("0.2"), Decimal("0.6"), Decimal("0.2")]
    odd = attempt(
        start=ts("2026-11-23T23:59:53"), end=ts("2026-11-24T00:00:00.000001"), duration=7.000001
    )
    assert sum(s for _, s in day_shares(odd)) == 1
    priced = PRICING.price(odd).amount
    assert sum(PRICING.cost_by_day([odd]).values()) == priced


def test_a_try_placed_by_its_end_or_start_alone() -> None:
    by_end = attempt(start=None, end=ts("2026-11-24T00:10:00"), duration=1200.0)  # began 23:50
    assert [d for d, _ in day_shares(by_end)] == [date(2026, 11, 23), date(2026, 11, 24)]
    by_start = attempt(start=ts("2026-11-24T10:00:00"), end=None, duration=60.0)
    assert day_shares(by_start) == [(date(2026, 11, 24), Decimal(1))]
    assert day_shares(attempt(start=None, end=None)) == []


def test_median() -> None:
    assert median([]) is None
    assert median([Decimal(3), Decimal(1), Decimal(2)]) == 2
    assert median([Decimal(4), Decimal(1), Decimal(3), Decimal(2)]) == Decimal("2.5")


# -- the catalog's cost section ------------------------------------------------------------------
def test_cost_section_forms_and_refusals() -> None:
    cost = Catalog.model_validate({"cost": {"instance_types": {"m5.xlarge": 0.192}}}).cost
    assert cost.instance_types["m5.xlarge"] == InstanceType(hourly_price=Decimal("0.192"))
    assert not cost.instance_types["m5.xlarge"].resolved
    with pytest.raises(ValidationError, match="either cpu_hour and memory_gb_hour, or an"):
        Catalog.model_validate({"cost": {"pool_rates": {"p": {}}}})
    with pytest.raises(ValidationError, match="give both cpu_hour and memory_gb_hour"):
        Catalog.model_validate({"cost": {"pool_rates": {"p": {"cpu_hour": 1}}}})
    with pytest.raises(ValidationError, match="either cpu_hour"):
        Catalog.model_validate(
            {
                "cost": {
                    "queue_rates": {"q": {"cpu_hour": 1, "memory_gb_hour": 1, "instance_type": "x"}}
                }
            }
        )
    with pytest.raises(ValidationError):
        Catalog.model_validate(
            {"cost": {"instance_types": {"x": {"hourly_price": 1, "cpu_share": 2}}}}
        )
    assert CATALOG.cost.named_tasks() == {"reserved_dag": frozenset({"big"})}
