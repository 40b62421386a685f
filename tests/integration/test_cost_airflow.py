"""Cost end to end with the real Airflow plugin: a task that burns CPU and a task that sleeps
for the same wall time, both requesting 2 CPUs and 4 GiB in a Kubernetes pod_override.

The listener measures each task in its process and sends its executor_config's requests; the
collector prices them. A `measured` pipeline pays for what was used: the CPU-heavy task costs
many times the sleeping one. A `reserved` pipeline pays for what was requested: the two cost
the same per second, so the same for the same length.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from impactwatch.catalog.model import Catalog
from impactwatch.collector.service import CollectorService
from impactwatch.collector.state.store import task_try_t
from impactwatch.devtools.airflow_home import AirflowHome, RunSpec
from tests.integration.helpers import catch_up, collector_with_intake, registry

pytestmark = pytest.mark.integration

TOKEN = "cost-intake-token"
SECONDS = 1.0
DAG_FILE = f"""
from __future__ import annotations

import time
from datetime import UTC, datetime

from airflow.sdk import dag, task

REQUESTS = {{"pod_override": {{"spec": {{"containers": [
    {{"name": "base", "resources": {{"requests": {{"cpu": "2", "memory": "4Gi"}}}}}}
]}}}}}}


def make(dag_id):
    @dag(dag_id=dag_id, schedule=None, start_date=datetime(2025, 1, 1, tzinfo=UTC))
    def pipeline():
        @task(executor_config=REQUESTS)
        def crunch():
            end, x = time.monotonic() + {SECONDS}, 0
            while time.monotonic() < end:  # busy for the wall time: CPU-heavy
                for i in range(10_000):
                    x ^= i * i

        @task(executor_config=REQUESTS)
        def nap():
            time.sleep({SECONDS})

        crunch() >> nap()

    return pipeline()


make("cost_measured")
make("cost_reserved")
"""
# $0.001 per CPU-second and $0.0001 per GiB-second: readable amounts
CATALOG = Catalog.model_validate(
    {
        "teams": {"data": {"slack_channel": "#data"}},
        "pipelines": {
            "cost_measured": {"team": "data", "cost_basis": "measured"},
            "cost_reserved": {"team": "data", "cost_basis": "reserved"},
        },
        "cost": {"rates": {"cpu_hour": "3.6", "memory_gb_hour": "0.36"}},
        "defaults": {"team": "data"},
    }
)
PER_SECOND_RESERVED = 2 * 0.001 + 4 * 0.0001  # 2 CPUs and 4 GiB requested


@pytest.fixture(scope="module")
def home(airflow_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> AirflowHome:
    folder = tmp_path_factory.mktemp("airflow-cost")
    dags = folder / "dags"
    dags.mkdir()
    (dags / "cost_dags.py").write_text(DAG_FILE)
    home = AirflowHome(
        folder, f"sqlite:///{folder / 'airflow.db'}", dags_folder=dags, airflow_bin=airflow_bin
    )
    home.migrate()
    home.reserialize()
    return home


@pytest.fixture
def collector(home: AirflowHome, tmp_path: Path) -> Iterator[tuple[CollectorService, str]]:
    with collector_with_intake(home.db_url, tmp_path, TOKEN, catalog=CATALOG) as running:
        yield running


def task_cost(service: CollectorService, dag_id: str, task_id: str) -> float:
    labels = {"dag_id": dag_id, "team": "data", "task_id": task_id}
    value = registry(service).get_sample_value("impactwatch_task_cost_dollars_total", labels)
    assert value is not None, labels
    return value


def test_cpu_heavy_and_sleeping_tasks_cost_by_basis(
    home: AirflowHome, collector: tuple[CollectorService, str], tmp_path: Path
) -> None:
    service, url = collector
    runner = AirflowHome(
        home.home,
        home.db_url,
        dags_folder=home.dags_folder,
        airflow_bin=home.airflow_bin,
        extra_env={
            "IMPACTWATCH_COLLECTOR_URL": url,
            "IMPACTWATCH_TOKEN": TOKEN,
            "IMPACTWATCH_LISTENER_STATE_DIR": str(tmp_path),
        },
    )
    runner.run_dags(
        [RunSpec("cost_measured", expect="success"), RunSpec("cost_reserved", expect="success")]
    )
    catch_up(service)  # the poller sees the DAGs: their listener events count from then on

    with service.store.engine.connect() as conn:
        rows = {(r.dag_id, r.task_id): r for r in conn.execute(select(task_try_t))}
    assert set(rows) == {
        (d, t) for d in ("cost_measured", "cost_reserved") for t in ("crunch", "nap")
    }
    for key, row in rows.items():  # from the listener: measured and requested, in the task
        assert (row.requested_cpu, row.requested_memory_bytes) == (2.0, 4 * 2**30), key
        assert row.cpu_seconds is not None and row.peak_rss_bytes, key
        assert SECONDS <= row.duration < 3 * SECONDS, key  # the same length, give or take
    crunch, nap = rows[("cost_measured", "crunch")], rows[("cost_measured", "nap")]
    assert crunch.cpu_seconds > 3 * nap.cpu_seconds  # busy vs asleep, as measured

    # measured: pay for what was used
    measured = {t: task_cost(service, "cost_measured", t) for t in ("crunch", "nap")}
    for task_id, row in (("crunch", crunch), ("nap", nap)):
        used = row.cpu_seconds * 0.001 + row.peak_rss_bytes / 2**30 * row.duration * 0.0001
        assert measured[task_id] == pytest.approx(used, rel=1e-9)
    assert measured["crunch"] > 3 * measured["nap"]

    # reserved: pay for what was requested, whatever was used
    reserved = {t: task_cost(service, "cost_reserved", t) for t in ("crunch", "nap")}
    for task_id in ("crunch", "nap"):
        row = rows[("cost_reserved", task_id)]
        assert reserved[task_id] == pytest.approx(row.duration * PER_SECOND_RESERVED, rel=1e-9)
    durations = [rows[("cost_reserved", t)].duration for t in ("crunch", "nap")]
    assert reserved["crunch"] / reserved["nap"] == pytest.approx(durations[0] / durations[1])
    assert reserved["crunch"] == pytest.approx(reserved["nap"], rel=0.35)  # same length: ~same
    assert reserved["nap"] > 10 * measured["nap"]  # a sleeper pays for its reservation

    # the run costs the sum of its tasks
    for dag_id, costs in (("cost_measured", measured), ("cost_reserved", reserved)):
        last = registry(service).get_sample_value(
            "impactwatch_dag_run_last_cost_dollars", {"dag_id": dag_id, "team": "data"}
        )
        assert last == pytest.approx(sum(costs.values()), rel=1e-9)
