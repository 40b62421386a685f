"""The PromQL both generators write: selectors, regex matchers, aggregations, rates, literals.

Pure string builders over the metric specs of `impactwatch.contract.metrics`; `alert_rules/` and
`dashboards/` build their expressions from these, so a query spelled by a rule and by a panel
reads the same.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from impactwatch.contract.metrics import MetricSpec

Matcher = tuple[str, str, str]  # (label, "=" | "!=" | "=~" | "!~", value)
_REGEX_SPECIALS = set("\\.+*?()|[]{}^$")


def name_of(metric: MetricSpec | str) -> str:
    """The series name of a metric spec, or a recording rule's name as given."""
    return metric.name if isinstance(metric, MetricSpec) else metric


def quote(value: str) -> str:
    """A PromQL (and Go template) string literal."""
    return json.dumps(value)


def number(value: float) -> str:
    """A PromQL number literal without float noise: 120, 0.95, 1048576."""
    return str(int(value)) if value == int(value) else repr(value)


def eq(label: str, value: str) -> Matcher:
    return (label, "=", value)


def regex_escape(text: str) -> str:
    """Escape RE2 metacharacters (dots in DAG ids, mostly)."""
    return "".join(f"\\{ch}" if ch in _REGEX_SPECIALS else ch for ch in text)


def alternation(names: Iterable[str]) -> str:
    """A regex matching exactly `names` (PromQL anchors it); "" matches only the empty value."""
    return "|".join(regex_escape(n) for n in sorted(set(names)))


def selector(metric: MetricSpec | str, *matchers: Matcher, suffix: str = "") -> str:
    """`name{label="value", ...}`; `suffix` picks a histogram series ("bucket", "sum", "count")."""
    name = f"{name_of(metric)}_{suffix}" if suffix else name_of(metric)
    if not matchers:
        return name
    inner = ", ".join(f"{label}{op}{quote(value)}" for label, op, value in matchers)
    return f"{name}{{{inner}}}"


def agg(op: str, labels: Iterable[str], inner: str) -> str:
    """`op by (labels) (inner)`; without labels, `op(inner)`."""
    grouping = ", ".join(labels)
    return f"{op} by ({grouping}) ({inner})" if grouping else f"{op}({inner})"


def increase(metric: MetricSpec, window: str, *matchers: Matcher, suffix: str = "") -> str:
    return f"increase({selector(metric, *matchers, suffix=suffix)}[{window}])"


def rate(metric: MetricSpec, window: str, *matchers: Matcher, suffix: str = "") -> str:
    return f"rate({selector(metric, *matchers, suffix=suffix)}[{window}])"


def quantile(
    q: float, metric: MetricSpec, labels: Iterable[str], window: str, *matchers: Matcher
) -> str:
    """The `q` quantile of histogram `metric` from its bucket rates over `window`, per `labels`."""
    buckets = agg("sum", (*labels, "le"), rate(metric, window, *matchers, suffix="bucket"))
    return f"histogram_quantile({number(q)}, {buckets})"
