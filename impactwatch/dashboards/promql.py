"""PromQL for the panels: Grafana's range variables, the catalog joins, zero fills.

The vocabulary shared with the alert rules (selectors, matchers, aggregations, rates) is
`impactwatch.contract.promql`; metric names come from `impactwatch.contract.metrics` (a
`MetricSpec`), never spelled here.

The catalog knows things no metric carries: a data product's title and the pipeline (DAG)
producing it. Both become labels through `label_replace` chains generated from the catalog
(`CatalogLabels`), so a data product's row can show its title, link to its pipeline, and join
pipeline metrics (cost, runs on time, pipeline alerts) to the products they produce.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from impactwatch.catalog.model import Catalog
from impactwatch.contract.metrics import MetricSpec
from impactwatch.contract.promql import Matcher, agg, alternation, increase, quote, regex_escape

Replace = tuple[str, str, str, str]  # label_replace(_, target, replacement, source, regex)

RANGE = "$__range"
RANGE_SECONDS = "$__range_s"
RATE_INTERVAL = "$__rate_interval"
INTERVAL = "$__interval"
DAY = "1d"

FILL = "# zero where nothing is open"
"""Marks where a panel's expression adds zeros for rows with nothing to count. The test proves
the part before it (which must find data on its own) and parses the whole."""


def var(label: str) -> Matcher:
    """`label=~"$label"`: filtered by the dashboard variable of the same name."""
    return (label, "=~", f"${label}")


def mean(metric: MetricSpec, labels: Iterable[str], window: str, *matchers: Matcher) -> str:
    """Mean observation of histogram `metric` over `window` (none where nothing was observed)."""
    total = agg("sum", labels, increase(metric, window, *matchers, suffix="sum"))
    count = agg("sum", labels, increase(metric, window, *matchers, suffix="count"))
    return f"{total}\n/\n({count} > 0)"


def per_day(expr: str) -> str:
    """An increase over the dashboard's range, as an average per day."""
    return f"{expr}\n/ ({RANGE_SECONDS} / 86400)"


def with_fill(expr: str, zeros: str) -> str:
    """`expr`, and 0 for every series of `zeros` that `expr` lacks."""
    return f"{expr}\n{FILL}\nor 0 * {zeros}"


def proof_part(expr: str) -> str:
    """What must find data on its own: the expression without its zero fill."""
    return expr.split(f"\n{FILL}\n", 1)[0]


def indent(text: str) -> str:
    return "  " + text.replace("\n", "\n  ")


@dataclass(frozen=True)
class CatalogLabels:
    """Adds catalog labels to series that carry `dataset`: `title` (the product's name in words)
    and `dag_id` (the pipeline producing it, where the catalog names one)."""

    titles: dict[str, str]
    producers: dict[str, list[str]]  # dag_id -> data products it produces

    @classmethod
    def of(cls, catalog: Catalog) -> CatalogLabels:
        producers: dict[str, list[str]] = defaultdict(list)
        for name, ds in sorted(catalog.datasets.items()):
            if ds.produced_by is not None and ds.produced_by.dag_id is not None:
                producers[ds.produced_by.dag_id].append(name)
        titles = {n: ds.title for n, ds in sorted(catalog.datasets.items()) if ds.title != n}
        return cls(titles, dict(sorted(producers.items())))

    def dag_replaces(self) -> list[Replace]:
        """`dag_id` set from `dataset` (products without a DAG producer get none)."""
        return [
            ("dag_id", dag_id, "dataset", alternation(names))
            for dag_id, names in self.producers.items()
        ]

    def title_replaces(self) -> list[Replace]:
        """`title`: the catalog's title, else the data product's name."""
        return [("title", "$1", "dataset", "(.*)")] + [
            ("title", title.replace("$", "$$"), "dataset", regex_escape(name))
            for name, title in self.titles.items()
        ]

    def with_dag(self, expr: str) -> str:
        return label_chain(expr, self.dag_replaces())

    def label(self, expr: str) -> str:
        """`dag_id` and `title` both: every data-product query of a table carries the same
        labels, so the table's rows merge."""
        return label_chain(expr, [*self.dag_replaces(), *self.title_replaces()])


def label_chain(expr: str, replaces: list[Replace]) -> str:
    """`expr` through one `label_replace` per entry, innermost first, one line each."""
    if not replaces:
        return expr
    tail = "".join(f",\n  {', '.join(quote(a) for a in args)})" for args in replaces)
    return f"{'label_replace(' * len(replaces)}\n{indent(expr)}{tail}"
