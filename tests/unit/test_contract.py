from __future__ import annotations

from typing import get_args

import pytest
from pydantic import ValidationError

from impactwatch.contract import alerts as a
from impactwatch.contract import metrics as c
from impactwatch.contract import promql as p
from impactwatch.contract.metrics import MetricSpec
from impactwatch.contract.thresholds import PlatformThresholds


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


def test_the_severity_ladder_and_the_kinds() -> None:
    assert sorted(a.SEVERITIES, key=a.SEVERITY_RANK.__getitem__) == [a.WARNING, a.CRITICAL]
    assert set(a.SEVERITIES) == set(get_args(a.Severity))
    assert set(a.BREACH_KINDS) < set(get_args(a.Kind))
    assert len(set(a.ALERT_NAMES)) == len(a.ALERT_NAMES)


def test_the_breach_counter_speaks_the_alerts_labels() -> None:
    assert {a.TEAM, a.SEVERITY, a.KIND, a.DAG_ID, a.DATASET} == set(c.SLA_BREACHES.labels)
    assert a.INCIDENT_LABELS[: len(a.SUBJECT_LABELS)] == a.SUBJECT_LABELS


def test_promql_vocabulary() -> None:
    quoted = p.selector(c.DAG_RUN_DURATION, p.eq("dag_id", 'a"b'), suffix="bucket")
    assert quoted == 'impactwatch_dag_run_duration_seconds_bucket{dag_id="a\\"b"}'
    assert p.selector("impactwatch:dag_paused") == "impactwatch:dag_paused"
    assert p.agg("max", (), "x") == "max(x)"
    assert p.agg("sum", ["dag_id", "team"], "x") == "sum by (dag_id, team) (x)"
    assert p.quantile(0.95, c.TASK_QUEUED, ("pool",), "5m") == (
        "histogram_quantile(0.95, sum by (pool, le) (rate(impactwatch_task_queued_seconds_bucket"
        "[5m])))"
    )
    assert [p.number(x) for x in (120.0, 0.95, 1_048_576.0)] == ["120", "0.95", "1048576"]
    assert p.alternation(["etl.v2", "a", "a"]) == "a|etl\\.v2"


def test_platform_thresholds_are_plain_numbers_within_bounds() -> None:
    assert PlatformThresholds().scheduler_lag == 60.0
    with pytest.raises(ValidationError, match="scheduler_lag_quantile"):
        PlatformThresholds(scheduler_lag_quantile=1.0)
    with pytest.raises(ValidationError, match="scheduler_lag"):
        PlatformThresholds(scheduler_lag="1m")  # durations in words are RuleSettings' job
