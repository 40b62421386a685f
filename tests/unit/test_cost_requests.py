"""Resource requests from a task's executor_config: parsed in the plugin (standard library
only, never raising), carried on the wire, stored, and read back; old state DBs upgraded."""

from __future__ import annotations

import json
import sqlite3
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import pytest

from impactwatch.airflow_listeners import wire
from impactwatch.airflow_listeners.resource_requests import (
    executor_config_requests,
    parse_quantity,
)
from impactwatch.collector.events import Batch, TaskTry
from impactwatch.collector.intake.parse import SCHEMA, IntakeError, parse_events
from impactwatch.collector.state.store import Store, make_engine, task_try_t

GI = 2**30


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("500m", Decimal("0.5")),
        ("2", Decimal(2)),
        ("1.5", Decimal("1.5")),
        ("0.25", Decimal("0.25")),
        (".5", Decimal("0.5")),
        ("2Gi", Decimal(2 * GI)),
        ("512Mi", Decimal(512 * 2**20)),
        ("1G", Decimal(10**9)),
        ("128974848", Decimal(128974848)),
        ("129e6", Decimal(129 * 10**6)),
        ("1E", Decimal(10**18)),  # exa, not an exponent
        ("1Ki", Decimal(1024)),
        ("100k", Decimal(100_000)),
        ("250u", Decimal("0.00025")),
        (" 1Gi ", Decimal(GI)),
        (2, Decimal(2)),
        (0.5, Decimal("0.5")),
    ],
)
def test_kubernetes_quantities(text: object, value: Decimal) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize(
    "text", ["", "-1", "1Gb", "2 Gi", "one", "1.2.3", None, True, float("nan"), "9" * 70, [1]]
)
def test_what_is_not_a_quantity(text: object) -> None:
    assert parse_quantity(text) is None


def k8s_pod(containers: list, init: list | None = None) -> SimpleNamespace:
    """Shaped like kubernetes.client.V1Pod (attributes, snake_case)."""

    def container(cpu: str | None, memory: str | None) -> SimpleNamespace:
        requests = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v is not None}
        return SimpleNamespace(name="c", resources=SimpleNamespace(requests=requests, limits={}))

    return SimpleNamespace(
        metadata=SimpleNamespace(name="p"),
        spec=SimpleNamespace(
            containers=[container(*c) for c in containers],
            init_containers=[container(*c) for c in init or []] or None,
            resources=None,
        ),
    )


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"pod_override": k8s_pod([("500m", "1Gi")])}, (0.5, GI)),
        # containers add up (a sidecar counts); an init container counts when it is larger
        ({"pod_override": k8s_pod([("1", "1Gi"), ("250m", "256Mi")])}, (1.25, GI + 2**28)),
        ({"pod_override": k8s_pod([("1", "1Gi")], init=[("2", "512Mi")])}, (2.0, GI)),
        ({"pod_override": k8s_pod([(None, "3Gi")])}, (None, 3 * GI)),
        # the pod as a plain dict (YAML), camelCase init containers, pod-level resources
        (
            {
                "pod_override": {
                    "spec": {
                        "containers": [{"name": "base", "resources": {"requests": {"cpu": "2"}}}],
                        "initContainers": [{"resources": {"requests": {"memory": "4Gi"}}}],
                    }
                }
            },
            (2.0, 4 * GI),
        ),
        (
            {"pod_override": {"spec": {"resources": {"requests": {"cpu": "3", "memory": "6Gi"}}}}},
            (3.0, 6 * GI),
        ),
        (
            {"KubernetesExecutor": {"request_cpu": "750m", "request_memory": "2G"}},
            (0.75, 2 * 10**9),
        ),
        ({"resources": {"requests": {"cpu": 4, "memory": "8Gi"}}}, (4.0, 8 * GI)),
        # nothing understood: no request, never an error
        (None, (None, None)),
        ({}, (None, None)),
        ({"KubernetesExecutor": {"image": "custom"}}, (None, None)),
        ({"pod_override": "not a pod"}, (None, None)),
        ({"pod_override": {"spec": {"containers": "nope"}}}, (None, None)),
        ({"resources": {"requests": {"cpu": "lots"}}}, (None, None)),
        ({"resources": {"requests": {"cpu": "1e9"}}}, (None, None)),  # a typo, not a request
        ("a string", (None, None)),
    ],
)
def test_requests_from_executor_config(config: object, expected: tuple) -> None:
    assert executor_config_requests(config) == expected


def test_a_hostile_object_never_raises() -> None:
    class Exploding:
        @property
        def spec(self) -> object:
            raise RuntimeError("boom")

    assert executor_config_requests({"pod_override": Exploding()}) == (None, None)


def runtime_ti(config: object) -> SimpleNamespace:
    task = SimpleNamespace(pool="p", task_type="PythonOperator", executor_config=config)
    return SimpleNamespace(
        dag_id="d", run_id="r", task_id="t", map_index=-1, try_number=1, state="success",
        start_date=None, end_date=None, queue="default", hostname="h", task=task,
    )  # fmt: skip


def test_the_wire_carries_requests_to_the_intake() -> None:
    event = wire.task_try(runtime_ti({"pod_override": k8s_pod([("500m", "2Gi")])}), "success")
    assert event is not None
    assert (event["requested_cpu"], event["requested_memory_bytes"]) == (0.5, 2 * GI)
    bare = wire.task_try(runtime_ti({}), "success")
    assert bare is not None and "requested_cpu" not in bare
    (parsed,) = parse_events(wire.encode([event])).task_tries
    assert (parsed.requested_cpu, parsed.requested_memory_bytes) == (0.5, 2 * GI)


def test_the_intake_refuses_negative_requests() -> None:
    body = {
        "schema": SCHEMA,
        "events": [
            {"type": "task_try", "dag_id": "d", "run_id": "r", "task_id": "t", "try_number": 1,
             "requested_cpu": -1}
        ],
    }  # fmt: skip
    with pytest.raises(IntakeError, match="requested_cpu"):
        parse_events(json.dumps(body).encode())


def stored(store: Store) -> list:
    with store.engine.connect() as conn:
        return list(conn.execute(task_try_t.select()))


def test_requests_are_stored_merged_and_read_back(tmp_path: Path) -> None:
    store = Store(make_engine(f"sqlite:///{tmp_path / 'state.db'}"))
    listener = TaskTry(
        dag_id="d",
        run_id="r",
        task_id="t",
        map_index=-1,
        try_number=1,
        state="running",
        requested_cpu=0.5,
        requested_memory_bytes=GI,
    )
    poller = TaskTry(
        dag_id="d",
        run_id="r",
        task_id="t",
        map_index=-1,
        try_number=1,
        state="success",
        start=10.0,
        end=20.0,
        duration=10.0,
    )
    store.ingest(Batch(task_tries=[listener]))
    store.ingest(Batch(task_tries=[poller]))  # the poller knows no requests: they stay
    (row,) = stored(store)
    assert (row.requested_cpu, row.requested_memory_bytes) == (0.5, GI)
    assert row.state == "success" and row.duration == 10.0


def test_a_state_db_from_before_requests_gets_the_columns(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    Store(make_engine(f"sqlite:///{path}")).engine.dispose()
    with sqlite3.connect(path) as conn:  # as an earlier version left it
        conn.execute("ALTER TABLE iw_task_try DROP COLUMN requested_cpu")
        conn.execute("ALTER TABLE iw_task_try DROP COLUMN requested_memory_bytes")
        conn.execute("DROP TABLE impactwatch_collector_alembic_version")  # made before Alembic
        conn.execute("DROP TABLE iw_series")  # and what revisions since added
        conn.execute("DROP TABLE iw_xcom_size")
        conn.execute("ALTER TABLE iw_task_try DROP COLUMN error_type")
        for column in ("team", "severity", "kind", "dag_id", "dataset"):
            conn.execute(f"ALTER TABLE iw_breach DROP COLUMN {column}")
    store = Store(make_engine(f"sqlite:///{path}"))
    t = TaskTry(
        dag_id="d",
        run_id="r",
        task_id="t",
        map_index=-1,
        try_number=1,
        state="success",
        requested_cpu=2.0,
    )
    store.ingest(Batch(task_tries=[t]))
    assert [row.requested_cpu for row in stored(store)] == [2.0]
