"""PromQL for the rules: gap-bridging reads, durations, alert-template snippets.

The vocabulary shared with the dashboards (selectors, matchers, aggregations, literals) is
`impactwatch.contract.promql`. Metric names always come from `impactwatch.contract.metrics` (a
`MetricSpec`) or from the recording-rule names defined in `rules_model`; nothing here spells one.
"""

from __future__ import annotations

from collections.abc import Iterable

from impactwatch.contract import metrics as c
from impactwatch.contract.metrics import MetricSpec
from impactwatch.contract.promql import Matcher, agg, alternation, name_of, selector


def latest(metric: MetricSpec | str, by: Iterable[str], window: str, *matchers: Matcher) -> str:
    """The newest value per `by` group, bridging scrape gaps shorter than `window`."""
    return agg("max", by, f"last_over_time({selector(metric, *matchers)}[{window}])")


def current(metric: MetricSpec | str, by: Iterable[str], *matchers: Matcher) -> str:
    """The current value per `by` group, across collector instances."""
    return agg("max", by, selector(metric, *matchers))


def prom_duration(seconds: float) -> str:
    """A Prometheus duration: 30s, 1m, 1h30m, 0s (milliseconds when not whole seconds)."""
    if seconds != int(seconds):
        return f"{round(seconds * 1000)}ms"
    remaining = int(seconds)
    if remaining == 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def human_duration(seconds: float) -> str:
    """How people read a limit, in the style the alert templates print ages: 1h 30m, 1d 2h."""
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        count, whole = divmod(whole, size)
        if count:
            parts.append(f"{count}{unit}")
    return " ".join(parts)


def human_bytes(size: float) -> str:
    """1048576 -> 1MiB, in the style of the `humanize1024` template function."""
    for unit in ("", "Ki", "Mi", "Gi", "Ti"):
        if abs(size) < 1024 or unit == "Ti":
            text = f"{size:.4g}"
            return f"{text}{unit}B"
        size /= 1024
    raise AssertionError("unreachable")


def template_literal(text: str) -> str:
    """Catalog text made safe inside an alert template: a "{{" in it prints as itself."""
    return text.replace("{{", '{{ "{{" }}')


# -- alert-template snippets (Go templates, rendered by Prometheus) --------------------------------

_STRIP_SECONDS = 'reReplaceAll "( 0[hm])* [0-9.]+s$" ""'
VALUE_AGE = f"{{{{ $value | humanizeDuration | {_STRIP_SECONDS} }}}}"
"""$value (seconds) as "1h 47m", "2h", "45s": humanizeDuration without the seconds (and zero
minutes and hours) past a minute, for ages measured in minutes to days."""
VALUE_DURATION = "{{ $value | humanizeDuration }}"
"""$value (seconds) as "1m 57s", for delays where the seconds matter."""

VALUE_INT = '{{ printf "%.0f" $value }}'
VALUE_BYTES = "{{ $value | humanize1024 }}B"
VALUE_PERCENT = "{{ $value | humanizePercentage }}"


def lookup_duration(metric: MetricSpec | str, label: str) -> str:
    """Template text printing `metric` for the alert's `label` value, as a duration."""
    query = f"max({name_of(metric)}{{{label}=%q}})"
    return (
        f'{{{{ with printf "{query}" $labels.{label} | query }}}}'
        f"{{{{ . | first | value | humanizeDuration | {_STRIP_SECONDS} }}}}"
        "{{ end }}"
    )


def lookup_time_of_day(metric: MetricSpec | str, label: str) -> str:
    """Template text printing timestamp `metric` for the alert's `label` value as "06:40 UTC"."""
    query = f"max({name_of(metric)}{{{label}=%q}})"
    return (
        f'{{{{ with printf "{query}" $labels.{label} | query }}}}'
        '{{ (. | first | value | toTime).Format "15:04 MST" }}'
        "{{ end }}"
    )


def lookup_value(query: str, label: str) -> str:
    """Template text printing the value of `query` (a printf format taking the alert's `label`
    value) as a plain number, for the router to read."""
    return (
        f'{{{{ with printf "{query}" $labels.{label} | query }}}}'
        '{{ . | first | value | printf "%.0f" }}'
        "{{ end }}"
    )


def lookup_age(metric: MetricSpec | str) -> str:
    """Template text printing how long ago the newest value of timestamp `metric` was."""
    query = f"time() - max({name_of(metric)})"
    return (
        f'{{{{ with query "{query}" }}}}'
        f"{{{{ . | first | value | humanizeDuration | {_STRIP_SECONDS} }}}}"
        "{{ end }}"
    )


# -- producers: Airflow's lineage carried to the router in an annotation -----------------------
_PRODUCER_LABELS = c.DATASET_PRODUCER.labels
_PRODUCER_WORD = "{{ .Labels.dataset }}={{ .Labels.dag_id }}/{{ .Labels.task_id }} "


def producers_of_datasets(names: Iterable[str]) -> str:
    """Template text listing what refreshes the data products `names`, as the collector exports
    it (`dataset=dag_id/task_id` words; contract.alerts.PRODUCERS)."""
    matcher: Matcher = ("dataset", "=~", alternation(names))
    query = agg("max", _PRODUCER_LABELS, selector(c.DATASET_PRODUCER, matcher))
    return f'{{{{ range query `{query}` | sortByLabel "dataset" }}}}{_PRODUCER_WORD}{{{{ end }}}}'


def producers_by_label(label: str) -> str:
    """The same for the data products whose `label` (dataset or dag_id) is the alert's."""
    query = agg("max", _PRODUCER_LABELS, f"{name_of(c.DATASET_PRODUCER)}{{{label}=%q}}")
    return (
        f'{{{{ range printf "{query}" $labels.{label} | query | sortByLabel "dataset" }}}}'
        f"{_PRODUCER_WORD}{{{{ end }}}}"
    )
