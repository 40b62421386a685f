"""A real Airflow home (config + metadata DB + example DAGs) driven from outside Airflow.

Airflow lives in its own virtualenv; everything here runs its CLI or its Python as a
subprocess and uses only the standard library, so impactwatch's venv never imports Airflow.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_DAGS = REPO_ROOT / "examples" / "dags"
AIRFLOW_BIN_ENV = "IMPACTWATCH_AIRFLOW_BIN"
_DAG_RUNNER = Path(__file__).with_name("dag_runner.py")  # run by Airflow's Python

# Fixed keys: test and demo databases stay readable across processes. Never use them for real.
_FERNET_KEY = "aW1wYWN0d2F0Y2gtZGV2dG9vbHMtZmVybmV0LWtleSE="
_SECRET_KEY = "impactwatch-devtools-not-a-secret"

log = logging.getLogger(__name__)

# Run by Airflow's Python: move every PostgreSQL sequence past its column's largest value.
_SYNC_SEQUENCES = """
from airflow import settings
from sqlalchemy import text
owned = text(
    "SELECT s.relname, t.relname, a.attname FROM pg_class s"
    " JOIN pg_depend d ON d.objid = s.oid AND d.deptype IN ('a', 'i')"
    " JOIN pg_class t ON t.oid = d.refobjid"
    " JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid"
    " WHERE s.relkind = 'S'"
)
with settings.engine.begin() as conn:
    for seq, table, column in conn.execute(owned).all():
        top = conn.execute(text(f'SELECT MAX("{column}") FROM "{table}"')).scalar() or 0
        conn.execute(
            text("SELECT setval(CAST(:seq AS regclass), :next, false)"),
            {"seq": f'"{seq}"', "next": top + 1},
        )
"""


# Run by Airflow's Python around dag_runner.main: time every task and, with
# IMPACTWATCH_TASK_PROCESSES=1, run each in a forked task-runner process as a worker does
# (`supervise_task`, talking to the in-process Execution API): lifecycle hooks, process exit.
# Airflow 3.3.2's supervisor checks for the child's exit once when its last socket closes; if
# the child is not reaped yet it sleeps in an empty select for up to [workers]
# min_heartbeat_interval (5 s). That race hits with or without listeners, more under load; here
# a blocking wait on the child closes it, so timings measure tasks, not the race.
_TASK_WRAPPER = """
import json, os, sys, time
from unittest import mock
sys.path.insert(0, os.path.dirname(sys.argv[1]))
import dag_runner
from airflow.sdk.definitions import dag as dag_module
from airflow.sdk.execution_time import supervisor
in_process = dag_module._run_task
timings = os.environ.get("IMPACTWATCH_TASK_TIMINGS")
check_exit = supervisor.WatchedSubprocess._check_subprocess_exit

def check_exit_waiting(self, raise_on_timeout=False, expect_signal=None):
    code = check_exit(self, raise_on_timeout=raise_on_timeout, expect_signal=expect_signal)
    if code is None and not self._open_sockets:
        try:
            self._process.wait(timeout=5)
        except Exception:
            pass
        code = check_exit(self, raise_on_timeout=raise_on_timeout, expect_signal=expect_signal)
    return code

supervisor.WatchedSubprocess._check_subprocess_exit = check_exit_waiting

def forked(*, ti, task, run_triggerer=False):
    from uuid import UUID
    from airflow.sdk.api.datamodels._generated import BundleInfo, TaskInstance
    from airflow.sdk.execution_time.supervisor import InProcessTestSupervisor, supervise_task
    from airflow.utils.state import TaskInstanceState
    ti.set_state(TaskInstanceState.QUEUED)
    what = TaskInstance(
        id=UUID(str(ti.id)), task_id=ti.task_id, dag_id=ti.dag_id, run_id=ti.run_id,
        try_number=ti.try_number, map_index=ti.map_index,
        dag_version_id=UUID(str(ti.dag_version_id)), queue=ti.queue, pool_slots=ti.pool_slots,
    )
    rel = os.path.relpath(task.dag.fileloc, os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    return supervise_task(
        ti=what, bundle_info=BundleInfo(name="dags-folder"), dag_rel_path=rel, token="",
        client=InProcessTestSupervisor._api_client(task.dag),
    )

run = forked if os.environ.get("IMPACTWATCH_TASK_PROCESSES") == "1" else in_process

def timed(*, ti, task, run_triggerer=False):
    started = time.perf_counter()
    try:
        return run(ti=ti, task=task, run_triggerer=run_triggerer)
    finally:
        took = time.perf_counter() - started
        if timings:
            row = {"dag_id": ti.dag_id, "run_id": ti.run_id, "task_id": ti.task_id,
                   "map_index": ti.map_index, "try_number": ti.try_number, "seconds": took,
                   "finished_at": time.time()}
            with open(timings, "a") as f:
                f.write(json.dumps(row) + "\\n")

with mock.patch.object(dag_module, "_run_task", timed):
    dag_runner.main(sys.argv[2], sys.argv[3])
"""
# Listener settings reach Airflow only through `extra_env`: a test never posts to a collector
# named in the caller's environment.
_LISTENER_ENV = ("IMPACTWATCH_COLLECTOR_URL", "IMPACTWATCH_TOKEN", "IMPACTWATCH_TOKEN_FILE")


class AirflowCommandError(RuntimeError):
    """An Airflow subprocess failed; the message carries the command and its output's tail."""


def find_airflow_bin() -> Path:
    """The `airflow` CLI: $IMPACTWATCH_AIRFLOW_BIN, else <repo>/.venv-airflow/bin/airflow."""
    configured = os.environ.get(AIRFLOW_BIN_ENV)
    path = Path(configured) if configured else REPO_ROOT / ".venv-airflow" / "bin" / "airflow"
    if not path.is_file():
        where = f"${AIRFLOW_BIN_ENV}={configured}" if configured else str(path)
        raise FileNotFoundError(
            f"Airflow CLI not found at {where}. Run `make test` (it builds .venv-airflow with "
            f"apache-airflow) or point ${AIRFLOW_BIN_ENV} at an `airflow` executable."
        )
    return path


def airflow_db_url(url: str) -> str:
    """The URL Airflow itself connects with: its sync engine wants psycopg2 for PostgreSQL."""
    for prefix in ("postgresql+psycopg://", "postgresql+psycopg2://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg2://" + url[len(prefix) :]
    return url


def reader_db_url(url: str) -> str:
    """The URL impactwatch reads the same database with (SQLAlchemy 2 + psycopg 3)."""
    for prefix in ("postgresql+psycopg2://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


@dataclass(frozen=True)
class RunSpec:
    """One DAG run to make. `run_type`: manual | scheduled | asset_triggered.

    `logical_date` (ISO 8601 or aware datetime) is required for scheduled runs and must be
    None for asset-triggered ones; None on a manual run leaves dag_run.logical_date NULL, as
    a run triggered from the UI or API does. `expect` (e.g. "success", "failed") makes
    :meth:`AirflowHome.run_dags` raise if the run ends in another state.
    """

    dag_id: str
    conf: dict[str, Any] | None = None
    logical_date: str | datetime | None = None
    run_id: str | None = None
    run_type: str = "manual"
    expect: str | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        if isinstance(self.logical_date, datetime):
            when = self.logical_date
            data["logical_date"] = (when if when.tzinfo else when.replace(tzinfo=UTC)).isoformat()
        return data


@dataclass(frozen=True)
class RunResult:
    """What a run ended as, read back from Airflow."""

    dag_id: str
    run_id: str
    state: str


@dataclass(frozen=True)
class TaskTiming:
    """Wall time of one task try as its runner saw it (with task processes: fork to exit).

    `finished_at` (Unix time) is when the runner got control back; minus the try's end_date
    in Airflow's DB, it is what the task's end cost: callbacks, listeners, process exit.
    """

    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    try_number: int
    seconds: float
    finished_at: float = 0.0


@dataclass
class AirflowHome:
    """An AIRFLOW_HOME folder bound to one metadata database and a DAG folder."""

    home: Path
    db_url: str
    dags_folder: Path = EXAMPLE_DAGS
    airflow_bin: Path = field(default_factory=find_airflow_bin)
    extra_env: dict[str, str] = field(default_factory=dict)
    log_level: str = "WARNING"

    def __post_init__(self) -> None:
        self.home = Path(self.home).resolve()
        self.dags_folder = Path(self.dags_folder).resolve()
        self.airflow_bin = Path(self.airflow_bin)
        self.db_url = airflow_db_url(self.db_url)
        if self.db_url.startswith("sqlite:") and not self.db_url.startswith("sqlite:////"):
            raise ValueError(f"SQLite URL {self.db_url!r} must be absolute: sqlite:////path/to.db")

    @property
    def python_bin(self) -> Path:
        """The Python of Airflow's environment: beside the CLI, else the CLI's shebang."""
        beside = self.airflow_bin.parent / "python"
        if beside.exists():
            return beside
        first = self.airflow_bin.read_text(errors="replace").splitlines()[0]
        if first.startswith("#!") and "python" in first:
            return Path(first[2:].strip().split()[0])
        raise FileNotFoundError(f"no Python found for the Airflow CLI at {self.airflow_bin}")

    def env(self) -> dict[str, str]:
        """The environment Airflow runs in: the caller's, minus its Airflow and listener
        settings, plus ours and `extra_env`."""
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("AIRFLOW") and k not in _LISTENER_ENV
        }
        base.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.db_url,
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
                # Unpaused, as in production: asset events then queue the consumer DAGs.
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                # SequentialExecutor is gone in Airflow 3; LocalExecutor works with SQLite too.
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__FERNET_KEY": _FERNET_KEY,
                "AIRFLOW__API__SECRET_KEY": _SECRET_KEY,
                "AIRFLOW__API_AUTH__JWT_SECRET": _SECRET_KEY,
                "AIRFLOW__LOGGING__LOGGING_LEVEL": self.log_level,
                "PYTHONDONTWRITEBYTECODE": "1",
            }
        )
        base.update(self.extra_env)
        return base

    def _run(
        self, argv: list[str], what: str, timeout: float, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess:
        self.home.mkdir(parents=True, exist_ok=True)
        try:
            proc = subprocess.run(
                argv,
                env={**self.env(), **(env or {})},
                cwd=self.home,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise AirflowCommandError(
                f"`{what}` did not finish within {timeout:.0f}s (AIRFLOW_HOME={self.home})\n"
                + _tail(_text(exc.stderr) or _text(exc.stdout))
            ) from None
        if proc.returncode != 0:
            raise AirflowCommandError(
                f"`{what}` exited with {proc.returncode} (AIRFLOW_HOME={self.home}, "
                f"db={_redact(self.db_url)})\n" + _tail(proc.stderr or proc.stdout)
            )
        return proc

    def airflow(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        """Run `airflow ARGS...` in this home; raise AirflowCommandError on failure."""
        return self._run([str(self.airflow_bin), *args], "airflow " + " ".join(args), timeout)

    def migrate(self) -> None:
        """`airflow db migrate`: a fresh database gets the schema built from the ORM."""
        self.airflow("db", "migrate")

    def reset_migrated(self) -> None:
        """`airflow db reset -y -m`: drop everything, rebuild by replaying migration files.

        This is the "upgraded from 2.x" variant: full instead of partial dag_run indexes,
        leftover ab_* and _xcom_archive tables.
        """
        self.airflow("db", "reset", "--yes", "--use-migration-files")
        if self.db_url.startswith("postgresql"):
            # The squashed 2.6.2 migration inserts default_pool with id=1 and leaves the
            # sequence behind: the first `pools set` would violate slot_pool_pkey.
            self.python("-c", _SYNC_SEQUENCES)

    def python(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        """Run Airflow's own Python (its venv) in this home."""
        what = "python " + " ".join(args)
        return self._run([str(self.python_bin), *args], what[:80], timeout)

    def reserialize(self) -> None:
        """Parse the DAG folder into the DB: dag, dag_tag, serialized_dag, assets, references."""
        self.airflow("dags", "reserialize")

    def set_pool(self, name: str, slots: int, description: str = "") -> None:
        self.airflow("pools", "set", name, str(slots), description or f"{name} pool")

    def run_dag(
        self,
        dag_id: str,
        *,
        conf: dict[str, Any] | None = None,
        logical_date: str | datetime | None = None,
        run_id: str | None = None,
        run_type: str = "manual",
    ) -> subprocess.CompletedProcess:
        """One real DAG run recorded in the metadata DB; see :class:`RunSpec` and :meth:`run_dags`.

        Unlike `airflow dags test` (logical date = now, run_id generated), a None
        `logical_date` stays NULL and `run_id` is honoured. A failed run does not raise.
        """
        spec = RunSpec(dag_id, conf, logical_date, run_id, run_type)
        proc, _ = self._run_specs([spec], timeout=300)
        return proc

    def run_dags(
        self,
        specs: list[RunSpec],
        *,
        timeout: float | None = None,
        task_processes: bool = False,
        timings: list[TaskTiming] | None = None,
    ) -> list[RunResult]:
        """Make several real DAG runs in ONE Airflow process, in order.

        Each run goes through `DAG.test()`, the code behind `airflow dags test`, so tasks run
        for real through the in-process Execution API and write task_instance,
        task_instance_history, xcom and asset_event rows. One process pays Airflow's start-up
        (about 7 s) once instead of once per run.

        `task_processes=True` runs each task in its own forked task-runner process, as a
        worker does (`supervise_task`): the task's lifecycle hooks fire and the process
        exits. A `timings` list receives each task try's wall time.
        """
        _, results = self._run_specs(
            specs,
            timeout=timeout or 120 + 60 * len(specs),
            task_processes=task_processes,
            timings=timings,
        )
        for spec, result in zip(specs, results, strict=True):
            if spec.expect and result.state != spec.expect:
                raise AirflowCommandError(
                    f"run {result.run_id} of {result.dag_id} ended {result.state}, "
                    f"expected {spec.expect} (AIRFLOW_HOME={self.home})"
                )
        return results

    def _run_specs(
        self,
        specs: list[RunSpec],
        *,
        timeout: float,
        task_processes: bool = False,
        timings: list[TaskTiming] | None = None,
    ) -> tuple[subprocess.CompletedProcess, list[RunResult]]:
        self.home.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.home, prefix="runs-") as scratch:
            spec_file = Path(scratch) / "specs.json"
            result_file = Path(scratch) / "results.json"
            timing_file = Path(scratch) / "timings.jsonl"
            spec_file.write_text(json.dumps([s.to_json() for s in specs]))
            what = "run DAGs " + ", ".join(s.dag_id for s in specs)
            runner = [str(_DAG_RUNNER), str(spec_file), str(result_file)]
            if task_processes or timings is not None:
                env = {
                    "IMPACTWATCH_TASK_PROCESSES": "1" if task_processes else "0",
                    "IMPACTWATCH_TASK_TIMINGS": str(timing_file),
                }
                argv = [str(self.python_bin), "-c", _TASK_WRAPPER, *runner]
                proc = self._run(argv, what, timeout, env)
                if timings is not None and timing_file.exists():
                    for line in timing_file.read_text().splitlines():
                        timings.append(TaskTiming(**json.loads(line)))
            else:
                proc = self._run([str(self.python_bin), *runner], what, timeout)
            results = [RunResult(**r) for r in json.loads(result_file.read_text())]
        return proc, results


def populate(
    home: AirflowHome, *, now: datetime | None = None, migrate: bool = True
) -> list[RunResult]:
    """The standard scenario for the demo and tests: a small fintech's morning.

    Schema and DAGs, the heavy_etl pool (2 slots), then: two scheduled market_data_ingest runs
    (the later one fails validate_market_data, so market data goes stale); an asset-triggered
    risk_scoring run (NULL logical_date, mapped over 3 segments) consuming the market_data
    event; regulatory_submission whose submit_to_regulator fails once and succeeds on retry;
    morning_reporting; nightly_heavy_etl in its pool; a manual payments_reconciliation.
    """
    started = time.monotonic()
    now = now or datetime.now(UTC)
    hour = now.replace(minute=0, second=0, microsecond=0)
    if migrate:  # False for a database already built, e.g. by reset_migrated()
        home.migrate()
    home.reserialize()
    home.set_pool("heavy_etl", 2, "Nightly ETL: 6 vCPU, 12 GB")
    results = home.run_dags(
        [
            RunSpec(
                "market_data_ingest",
                logical_date=hour - timedelta(hours=2),
                run_type="scheduled",
                expect="success",
            ),
            RunSpec(
                "market_data_ingest",
                conf={"fail": ["validate_market_data"]},
                logical_date=hour - timedelta(hours=1),
                run_type="scheduled",
                expect="failed",
            ),
            RunSpec("risk_scoring", run_type="asset_triggered", expect="success"),
            RunSpec(
                "regulatory_submission",
                conf={"fail": ["submit_to_regulator"]},
                logical_date=_last_daily(now, 5, 0),
                run_type="scheduled",
                expect="success",
            ),
            RunSpec(
                "morning_reporting",
                logical_date=_last_daily(now, 6, 30),
                run_type="scheduled",
                expect="success",
            ),
            RunSpec(
                "nightly_heavy_etl",
                logical_date=_last_daily(now, 0, 0),
                run_type="scheduled",
                expect="success",
            ),
            RunSpec("payments_reconciliation", expect="success"),
        ]
    )
    log.info("populated %s in %.1fs", _redact(home.db_url), time.monotonic() - started)
    return results


def _last_daily(now: datetime, hour: int, minute: int) -> datetime:
    """The latest HH:MM UTC not after `now`: the logical date of a daily cron's last run."""
    today = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    return today if today <= now else today - timedelta(days=1)


def _text(data: str | bytes | None) -> str:
    return data.decode(errors="replace") if isinstance(data, bytes) else data or ""


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _redact(url: str) -> str:
    """The URL without a password."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not at or ":" not in creds:
        return url
    return f"{scheme}{sep}{creds.split(':', 1)[0]}:***@{host}"
