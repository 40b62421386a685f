from __future__ import annotations

import pytest

from impactwatch.contract import metrics as c
from impactwatch.contract.metrics import MetricSpec


def test_names_are_unique_and_follow_the_conventions() -> None:
    names = [m.name for m in c.ALL_METRICS]
    assert len(names) == len(set(names))
    for m in c.ALL_METRICS:
        assert m.name.startswith("impactwatch_")
        if m.name.endswith("_timestamp_seconds"):
            assert m.kind == "gauge"


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"name": "airflow_x", "kind": "gauge"}, "must match"),
        ({"name": "impactwatch_x", "kind": "counter"}, "_total"),
        ({"name": "impactwatch_x_total", "kind": "gauge"}, "_total"),
        ({"name": "impactwatch_x", "kind": "histogram"}, "buckets"),
        ({"name": "impactwatch_x", "kind": "gauge", "labels": ("dag_id", "run_id")}, "unbounded"),
    ],
)
def test_bad_definitions_fail_at_import_time(kwargs: dict, reason: str) -> None:
    kwargs.setdefault("labels", ())
    with pytest.raises(ValueError, match=reason):
        MetricSpec(help="h", **kwargs)


def test_counter_family_drops_total() -> None:
    assert c.SLA_BREACHES.family == "impactwatch_sla_breaches"
    assert c.DAG_RUN_DURATION.series("count") == "impactwatch_dag_run_duration_seconds_count"
