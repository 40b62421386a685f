"""Cost tables for people: the rates the model uses, a reconciliation with the bill. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from impactwatch.catalog.model import Catalog
from impactwatch.collector.cost.pricing import Pricing, instance_rates, money
from impactwatch.collector.cost.reconcile import Reconciliation

RATE_PLACES = Decimal("0.000001")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows, strict=True)]
    lines = [header, ["-" * w for w in widths], *rows]
    return "\n".join(
        "  ".join(str(cell).ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def rates_table(catalog: Catalog) -> str:
    """Each place a rate applies (default, pools, queues), its rates and where they come from."""
    cost = catalog.cost
    pricing = Pricing(catalog)
    rows = []

    def row(where: str, queue: str | None, pool: str | None, how: str) -> None:
        rates = pricing.rates(queue, pool)
        rows.append(
            [
                where,
                str(money(rates.cpu_hour, RATE_PLACES)),
                str(money(rates.memory_gb_hour, RATE_PLACES)),
                how,
            ]
        )

    row("default", None, None, "cost.rates")
    for kind, choices in (("pool", cost.pool_rates), ("queue", cost.queue_rates)):
        for name, choice in sorted(choices.items()):
            queue, pool = (name, None) if kind == "queue" else (None, name)
            how = "written"
            if choice.instance_type is not None:
                instance = cost.instance_types.get(choice.instance_type)
                if instance is None or instance_rates(instance, cost.rates) is None:
                    how = f"{choice.instance_type}: shape unknown, so cost.rates"
                else:
                    split = (
                        f"{float(instance.cpu_share * 100):g}% to CPU"
                        if instance.cpu_share is not None
                        else "split as cost.rates"
                    )
                    how = (
                        f"{choice.instance_type}: {instance.hourly_price}/h, "
                        f"{instance.vcpus:g} vCPU, {instance.memory_gb:g} GiB, {split}"
                    )
            row(f"{kind} {name}", queue, pool, how)
    header = ["where", f"{cost.currency}/CPU-hour", f"{cost.currency}/GiB-hour", "from"]
    return _table(header, rows)


def reconciliation_table(result: Reconciliation, currency: str) -> str:
    """Per DAG: the bill's and the estimate's cost per day, and how far apart they are."""
    days = f"{result.days[0]}..{result.days[-1]}" if len(result.days) > 1 else str(result.days[0])
    rows = []
    for r in result.rows:
        ratio = f"{r.ratio:.2f}x" if r.ratio is not None else "-"
        rows.append([r.dag_id, str(money(r.actual)), str(money(r.estimated)), ratio])
    rows.append(["(unattributed)", str(money(result.unattributed)), "-", "-"])
    header = ["pipeline", f"actual {currency}/day", f"estimate {currency}/day", "actual/estimate"]
    note = " (Cost Explorer marks these figures as estimated)" if result.estimated else ""
    return f"AWS bill vs estimate, UTC {days}{note}\n" + _table(header, rows)
