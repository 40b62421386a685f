"""The listener plugin inside a real Airflow 3, posting to a real collector (or a hostile one).

One Airflow home (SQLite) serves the module; each test makes its own runs. The plugin is found
through its `airflow.plugins` entry point (impactwatch installed in Airflow's venv) and
switched on by IMPACTWATCH_COLLECTOR_URL alone. Two ways of running tasks:

- in-process, as `airflow dags test`: the task and dag-run hooks fire in the runner's process;
- `task_processes=True`: each task in a forked task-runner process, as a worker runs it
  (`supervise_task`): on_starting, the task hooks, before_stopping, then the process exits.
"""

from __future__ import annotations

import json
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, text

from impactwatch.collector.airflow.schema import to_epoch
from impactwatch.collector.intake.parse import SCHEMA, parse_events
from impactwatch.collector.service import CollectorService
from impactwatch.collector.state.schema import asset_update_t
from impactwatch.collector.state.store import dag_run_t, task_try_t
from impactwatch.contract.metrics import INTAKE_REFUSALS
from impactwatch.devtools.airflow_home import AirflowHome, RunResult, RunSpec, TaskTiming
from tests.integration.helpers import catch_up, collector_with_intake, registry

pytestmark = pytest.mark.integration

TOKEN = "listener-intake-token"
# The target is 50 ms added at a task's end with the collector dead, slow or silent; it is
# measured on a quiet machine by bench/bench_listener.py. Here, on a CI host that may be busy,
# the bound only has to tell "a bounded flush" from "paid a request timeout" (5 s).
BOUND = 0.25
RUN_COUNT = "impactwatch_dag_run_duration_seconds_count"


# --- an Airflow home and a collector ----------------------------------------------------------
@pytest.fixture(scope="module")
def home(airflow_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> AirflowHome:
    folder = tmp_path_factory.mktemp("airflow-listener")
    home = AirflowHome(folder, f"sqlite:///{folder / 'airflow.db'}", airflow_bin=airflow_bin)
    home.migrate()
    home.reserialize()
    home.set_pool("heavy_etl", 2, "Nightly ETL")
    return home


def plugin_env(url: str, state_dir: Path, **settings: str) -> dict[str, str]:
    """What switches the plugin on, with a back-off file private to the test."""
    env = {
        "IMPACTWATCH_COLLECTOR_URL": url,
        "IMPACTWATCH_TOKEN": TOKEN,
        "IMPACTWATCH_LISTENER_STATE_DIR": str(state_dir),
    }
    env.update({f"IMPACTWATCH_LISTENER_{k.upper()}": v for k, v in settings.items()})
    return env


def run(
    home: AirflowHome, specs: list[RunSpec], env: dict[str, str], *, task_processes: bool
) -> tuple[list[RunResult], list[TaskTiming]]:
    timings: list[TaskTiming] = []
    runner = AirflowHome(
        home.home, home.db_url, airflow_bin=home.airflow_bin, extra_env=env, log_level="WARNING"
    )
    results = runner.run_dags(specs, task_processes=task_processes, timings=timings)
    return results, timings


@contextmanager
def collector(
    home: AirflowHome, state_dir: Path, port: int = 0
) -> Iterator[tuple[CollectorService, str]]:
    """A real collector (SQLite state DB) polling `home`, its intake on a loopback port."""
    with collector_with_intake(home.db_url, state_dir, TOKEN, port=port) as running:
        yield running


def wire_body(events: list[dict]) -> bytes:
    return json.dumps({"schema": SCHEMA, "events": events}).encode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def airflow_rows(home: AirflowHome, query: str, run_ids: list[str]) -> list[dict]:
    engine = create_engine(home.db_url)
    try:
        with engine.connect() as conn:
            sql = text(query.replace(":runs", ", ".join(f"'{r}'" for r in run_ids)))
            return [dict(r._mapping) for r in conn.execute(sql)]
    finally:
        engine.dispose()


def airflow_tries(home: AirflowHome, run_ids: list[str]) -> dict[tuple, dict]:
    """Every task try of these runs in Airflow's DB, retries (task_instance_history) too."""
    cols = (
        "dag_id, run_id, task_id, map_index, try_number, state, end_date, duration, pool, operator"
    )
    rows = airflow_rows(
        home,
        f"SELECT {cols} FROM task_instance WHERE run_id IN (:runs)"
        f" UNION ALL SELECT {cols} FROM task_instance_history WHERE run_id IN (:runs)",
        run_ids,
    )
    return {
        (r["dag_id"], r["run_id"], r["task_id"], r["map_index"], r["try_number"]): r for r in rows
    }


def stored_tries(service: CollectorService, run_ids: list[str]) -> dict[tuple, object]:
    with service.store.engine.connect() as conn:
        rows = conn.execute(select(task_try_t).where(task_try_t.c.run_id.in_(run_ids)))
        return {(r.dag_id, r.run_id, r.task_id, r.map_index, r.try_number): r for r in rows}


def stored_runs(service: CollectorService, run_ids: list[str]) -> dict[str, object]:
    with service.store.engine.connect() as conn:
        rows = conn.execute(select(dag_run_t).where(dag_run_t.c.run_id.in_(run_ids)))
        return {r.run_id: r for r in rows}


def assert_every_run_counted_once(home: AirflowHome, service: CollectorService) -> None:
    every = airflow_rows(
        home, "SELECT dag_id, state, count(*) AS n FROM dag_run GROUP BY dag_id, state", []
    )
    for row in every:
        assert runs_counted(service, row["dag_id"], row["state"]) == row["n"], row


def listener_events(service: CollectorService, outcome: str) -> float:
    labels = {"source": "listener", "outcome": outcome}
    return registry(service).get_sample_value("impactwatch_collector_events_total", labels) or 0


def runs_counted(service: CollectorService, dag_id: str, state: str) -> float | None:
    labels = {"dag_id": dag_id, "team": service.state.team(dag_id), "state": state}
    return registry(service).get_sample_value(RUN_COUNT, labels)


# --- registration through the entry point, only when configured -------------------------------
PROBE = """
from airflow.listeners.listener import get_listener_manager as core
from airflow.sdk.listener import get_listener_manager as task_sdk
from airflow.plugins_manager import get_plugin_info
names = lambda manager: sorted(type(p).__name__ for p in manager().pm.get_plugins())
print([p["name"] for p in get_plugin_info()], names(core), names(task_sdk))
"""


def test_the_plugin_registers_its_listener_only_when_configured(
    home: AirflowHome, tmp_path: Path
) -> None:
    loaded_off = home.python("-c", PROBE).stdout.strip().splitlines()[-1]
    on = AirflowHome(
        home.home,
        home.db_url,
        airflow_bin=home.airflow_bin,
        extra_env=plugin_env(f"http://127.0.0.1:{free_port()}", tmp_path),
    )
    loaded_on = on.python("-c", PROBE).stdout.strip().splitlines()[-1]
    assert loaded_off == "['impactwatch'] [] []"  # installed, loaded, registers nothing
    assert loaded_on == "['impactwatch'] ['ImpactwatchListener'] ['ImpactwatchListener']"


# --- Airflow's ORM objects, as the scheduler and API server pass them -------------------------
ORM_PROBE = """
import json
from sqlalchemy import event, select
from airflow import settings
from airflow.models import DagRun, TaskInstance
from impactwatch.airflow_listeners import wire
settings.configure_orm()
session = settings.Session()
ti = session.scalars(select(TaskInstance).where(TaskInstance.state == "success").limit(1)).one()
run = session.scalars(select(DagRun).limit(1)).one()
loaded = [wire.task_try(ti), wire.dag_run(run)]
session.expire(ti)
session.expire(run)  # as after a commit: reading would query, in the caller's transaction
queries = []
event.listen(session.get_bind(), "before_cursor_execute", lambda *a: queries.append(a[2]))
print(json.dumps({"loaded": loaded, "expired": [wire.task_try(ti), wire.dag_run(run)],
                  "queries": len(queries)}))
"""


def test_orm_objects_are_read_without_a_query(
    home: AirflowHome, baseline: tuple[list[tuple], dict[tuple, float]]
) -> None:
    """On the runs the baseline made (successful tries among them)."""
    out = json.loads(home.python("-c", ORM_PROBE).stdout.strip().splitlines()[-1])
    task, run = out["loaded"]
    assert task["state"] == "success" and task["pool"] == "default_pool"
    assert task["operator"] == "_PythonDecoratedOperator" and task["duration"] >= 0
    assert run["run_type"] == "manual" and run["duration"] >= 0
    assert parse_events(wire_body([task, run])).task_tries
    # expired attributes are not read: no event rather than a query in the scheduler's transaction
    assert out["expired"] == [None, None] and out["queries"] == 0


# --- collector up: the listener alone measures the runs, then the poller adds nothing ---------
def test_real_runs_reach_the_collector_through_the_listener(
    home: AirflowHome, tmp_path: Path
) -> None:
    with collector(home, tmp_path) as (service, url):
        catch_up(service)  # the poller's watermarks are set before these runs: it reads them
        # the module's Airflow home holds other tests' runs, which that first catch-up counted
        counted = {
            d: runs_counted(service, d, "success") or 0
            for d in ("market_data_ingest", "regulatory_submission")
        }
        specs = [
            RunSpec("market_data_ingest", expect="success"),  # asset producer
            RunSpec("regulatory_submission", conf={"fail": ["submit_to_regulator"]}),
            RunSpec("risk_scoring", run_type="asset_triggered", expect="success"),  # mapped
            RunSpec("nightly_heavy_etl", conf={"cpu_seconds": 0.3}, expect="success"),
        ]
        results, _ = run(home, specs, plugin_env(url, tmp_path), task_processes=False)
        assert [r.state for r in results] == ["success"] * 4  # the retry succeeded
        run_ids = [r.run_id for r in results]
        truth = airflow_tries(home, run_ids)
        assert len(truth) == 4 + 4 + 5 + 3  # submit_to_regulator twice, score_customers x3

        # before the poller sees them: every try came from the listener, measured in the task
        tries = stored_tries(service, run_ids)
        assert set(tries) == set(truth)
        for key, row in tries.items():
            db = truth[key]
            assert row.state == db["state"], key
            assert row.duration == pytest.approx(db["duration"], abs=1e-3), key
            assert (row.pool, row.operator) == (db["pool"], db["operator"]), key
            assert row.cpu_seconds is not None and row.cpu_seconds >= 0, key
            assert row.peak_rss_bytes and row.peak_rss_bytes > 50 * 2**20, key
        burn = next(r for k, r in tries.items() if k[2] == "transform_ledger")
        assert burn.pool == "heavy_etl" and burn.cpu_seconds >= 0.25
        submit = sorted((k[4], r.state) for k, r in tries.items() if k[2] == "submit_to_regulator")
        assert submit == [(1, "failed"), (2, "success")]

        # dag runs and their metrics, from the listener alone
        runs = stored_runs(service, run_ids)
        db_runs = {
            r["run_id"]: r
            for r in airflow_rows(home, "SELECT * FROM dag_run WHERE run_id IN (:runs)", run_ids)
        }
        for run_id, row in runs.items():
            db = db_runs[run_id]
            assert row.state == db["state"] and row.run_type == db["run_type"]
            assert row.end_ - row.start == pytest.approx(
                to_epoch(db["end_date"]) - to_epoch(db["start_date"]), abs=1e-3
            )
        assert len(runs) == 4
        for dag_id in ("market_data_ingest", "regulatory_submission"):
            assert runs_counted(service, dag_id, "success") == counted[dag_id] + 1, dag_id
        assert listener_events(service, "new") >= 16 + 4 + 2  # tries, runs, asset updates
        assert not any(listener_events(service, reason) for reason in INTAKE_REFUSALS)
        assert listener_events(service, "unknown_dag") == 0  # the poller read these DAGs first
        freshness = service.store.summary().asset_updates
        assert {"s3://fintech-lake/market/prices", "s3://fintech-lake/risk/customer_scores"} <= set(
            freshness
        )

        # the poller reads the same runs (and any other test's): merged, each counted once
        catch_up(service)
        assert_every_run_counted_once(home, service)
        after = stored_tries(service, run_ids)
        assert set(after) == set(truth)
        assert all(r.cpu_seconds is not None for r in after.values())

        # each asset event: sent by the listener, read by the poller, stored (counted) once
        produced = airflow_rows(
            home,
            "SELECT e.source_dag_id, e.source_task_id, e.source_run_id, a.uri FROM asset_event e"
            " JOIN asset a ON a.id = e.asset_id WHERE e.source_run_id IN (:runs)",
            run_ids,
        )
        assert len(produced) >= 2
        with service.store.engine.connect() as conn:
            t = asset_update_t
            q = select(t.c.dag_id, t.c.task_id, t.c.run_id, t.c.uri).where(t.c.run_id.in_(run_ids))
            stored = sorted(tuple(r) for r in conn.execute(q))
        assert stored == sorted(tuple(r.values()) for r in produced)


# --- hostile collectors: tasks never fail and lose at most the bound --------------------------
def _read_request(client: socket.socket) -> None:
    client.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = client.recv(65536)
        if not chunk:
            return
        data += chunk


def _http_500(client: socket.socket) -> None:
    _read_request(client)
    client.sendall(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 2\r\n\r\n{}")
    client.close()


def _endless(client: socket.socket) -> None:
    """Answers 202, then a body that trickles and never ends."""
    _read_request(client)
    client.sendall(b"HTTP/1.1 202 Accepted\r\nContent-Length: 100000\r\n\r\n")
    for _ in range(600):
        time.sleep(0.5)
        try:
            client.sendall(b" ")
        except OSError:
            return


ANSWERS: dict[str, Callable[[socket.socket], None] | None] = {
    "black_hole": None,  # accepts, reads nothing, answers nothing
    "http_500": _http_500,
    "endless": _endless,
}


@dataclass
class Hostile:
    """A collector that misbehaves one way; `hits` counts the connections it accepted.

    `unreachable` accepts nothing and its accept queue is full, so connection attempts hang
    as with a firewall that drops packets.
    """

    kind: str
    url: str = ""
    hits: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _held: list[socket.socket] = field(default_factory=list)

    def __enter__(self) -> Hostile:
        listener = socket.create_server(("127.0.0.1", 0), backlog=0 if self.unreachable else 128)
        self.url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        self._held.append(listener)
        if self.unreachable:
            self._held.append(socket.create_connection(listener.getsockname()))  # queue full
            return self
        listener.settimeout(0.2)
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    @property
    def unreachable(self) -> bool:
        return self.kind == "unreachable"

    def _accept(self, listener: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                client, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            self.hits += 1
            self._held.append(client)
            answer = ANSWERS[self.kind]
            if answer is not None:
                threading.Thread(target=answer, args=(client,), daemon=True).start()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for sock in self._held:
            sock.close()


# Tasks that succeed, fail and retry, and fail for good.
HOSTILE_SPECS = [
    RunSpec("regulatory_submission", conf={"fail": ["submit_to_regulator"]}, expect="success"),
    RunSpec("market_data_ingest", conf={"fail_always": ["fetch_fx_rates"]}, expect="failed"),
]


def states(home: AirflowHome, results: list[RunResult]) -> list[tuple]:
    tries = airflow_tries(home, [r.run_id for r in results])
    return sorted((k[0], k[2], k[3], k[4], v["state"]) for k, v in tries.items())


def task_ends(home: AirflowHome, timings: list[TaskTiming]) -> dict[tuple, float]:
    """What each try's end cost: from its end_date (state reported) to its process reaped."""
    tries = airflow_tries(home, sorted({t.run_id for t in timings}))
    return {
        (t.dag_id, t.task_id, t.map_index, t.try_number): t.finished_at
        - (to_epoch(tries[(t.dag_id, t.run_id, t.task_id, t.map_index, t.try_number)]["end_date"]))
        for t in timings
    }


@pytest.fixture(scope="module")
def baseline(home: AirflowHome) -> tuple[list[tuple], dict[tuple, float]]:
    """The same runs with the plugin installed but not configured (no listener registered)."""
    results, timings = run(home, HOSTILE_SPECS, {}, task_processes=True)
    return states(home, results), task_ends(home, timings)


def added(
    home: AirflowHome, timings: list[TaskTiming], baseline: dict[tuple, float]
) -> list[float]:
    """Per try, the end's cost beyond the baseline's, sorted."""
    mine = task_ends(home, timings)
    assert set(mine) == set(baseline)
    return sorted(mine[k] - baseline[k] for k in mine)


@pytest.mark.parametrize(
    ("kind", "settings"),
    [
        ("unreachable", {"backoff": "0"}),  # every task waits out the flush timeout: worst case
        ("black_hole", {"backoff": "0"}),
        ("http_500", {"backoff": "0"}),
        ("endless", {"backoff": "0"}),
    ],
    ids=["unreachable", "black-hole", "http-500", "endless-response"],
)
def test_a_hostile_collector_never_fails_or_stalls_a_task(
    home: AirflowHome,
    baseline: tuple[list[tuple], dict[tuple, float]],
    tmp_path: Path,
    kind: str,
    settings: dict[str, str],
) -> None:
    with Hostile(kind) as hostile:
        env = plugin_env(hostile.url, tmp_path, **settings)
        results, timings = run(home, HOSTILE_SPECS, env, task_processes=True)
    base_states, base_times = baseline
    assert states(home, results) == base_states  # same tries, same states
    assert hostile.unreachable or hostile.hits >= len(timings)  # every task process tried
    extra = added(home, timings, base_times)
    assert statistics.median(extra) < BOUND, extra
    assert extra[-1] < 4 * BOUND, extra  # load noise aside, no task pays a request timeout


def test_after_a_timeout_the_hosts_next_task_processes_skip_the_collector(
    home: AirflowHome, baseline: tuple[list[tuple], dict[tuple, float]], tmp_path: Path
) -> None:
    """The back-off lives in a file: a new task process does not pay the timeout again."""
    with Hostile("unreachable") as hostile:
        runner = AirflowHome(
            home.home,
            home.db_url,
            airflow_bin=home.airflow_bin,
            extra_env=plugin_env(hostile.url, tmp_path, backoff="60"),  # outlasts the runs
        )
        timings: list[TaskTiming] = []
        proc, results = runner._run_specs(
            HOSTILE_SPECS, timeout=300, task_processes=True, timings=timings
        )
    assert states(home, results) == baseline[0]
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "event(s) not sent (" in ln]
    waited = [ln for ln in lines if "not sent (cannot connect: timed out)" in ln]
    skipped = [ln for ln in lines if "not sent (collector in back-off)" in ln]
    assert len(waited) == 1, lines  # the first task process waited out the flush timeout
    assert len(skipped) >= len(timings) - 1  # every later one skipped the collector at once
    assert list(tmp_path.glob("impactwatch-listener-*.backoff"))


# --- collector down while DAGs run: the poller recovers every run, once ------------------------
def test_runs_made_while_the_collector_is_down_are_recovered_by_the_poller(
    home: AirflowHome, baseline: tuple[list[tuple], dict[tuple, float]], tmp_path: Path
) -> None:
    port = free_port()  # nothing listens: connection refused
    results, timings = run(
        home, HOSTILE_SPECS, plugin_env(f"http://127.0.0.1:{port}", tmp_path), task_processes=True
    )
    assert states(home, results) == baseline[0]
    assert statistics.median(added(home, timings, baseline[1])) < BOUND

    with collector(home, tmp_path, port) as (service, _):  # the collector comes back
        catch_up(service)
        run_ids = [r.run_id for r in results]
        runs = stored_runs(service, run_ids)
        db_runs = {
            r["run_id"]: r
            for r in airflow_rows(home, "SELECT * FROM dag_run WHERE run_id IN (:runs)", run_ids)
        }
        assert {k: r.state for k, r in runs.items()} == {k: r["state"] for k, r in db_runs.items()}
        for run_id, row in runs.items():
            db = db_runs[run_id]
            assert row.end_ - row.start == pytest.approx(
                to_epoch(db["end_date"]) - to_epoch(db["start_date"]), abs=1e-3
            )
        assert_every_run_counted_once(home, service)  # these included
        tries = stored_tries(service, run_ids)
        assert set(tries) == set(airflow_tries(home, run_ids))
        assert listener_events(service, "new") == 0  # nothing came by the listener
