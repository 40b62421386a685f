"""Seed a realistic Airflow 3.3 metadata DB on PostgreSQL for the benchmarks.

The schema comes from the real `airflow db migrate` (Airflow's own virtualenv, as a subprocess);
the history is set-based SQL (one INSERT ... SELECT per table): N DAGs x T tasks on a staggered
schedule (hourly by default), mostly successful runs, some failed ones with upstream_failed
tails, the newest runs still in flight (task instances not scheduled yet at `try_number` 0, as
Airflow 3.3 makes them), ~1% retried tries in `task_instance_history`, an XCom per run, an Asset
event per successful run, scheduler jobs and two pools. `task_instance.id` is a UUIDv7 made from
the row's own time, and dag_run ids follow `run_after`, as in a real install.

    .venv/bin/python bench/seed_metadata.py --task-instances 1000000      # 100 DAGs x 25 tasks
    .venv/bin/python bench/seed_metadata.py --dags 10000                  # 4 daily runs each
    .venv/bin/python bench/seed_metadata.py --small                       # smoke run, seconds

The database is dropped at the end unless `--keep`. The other benchmarks import `build`.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

REPO = Path(__file__).resolve().parents[1]
AIRFLOW_BIN = Path(os.environ.get("IMPACTWATCH_AIRFLOW_BIN", REPO / ".venv-airflow/bin/airflow"))
PG_BASE = os.environ.get("IMPACTWATCH_BENCH_PG", "postgresql://postgres@127.0.0.1:5432").rstrip("/")


@dataclass(frozen=True)
class SeedSpec:
    """What history to make. `interval_hours` is the schedule (1 = hourly, 24 = daily)."""

    dags: int = 100
    tasks: int = 25
    runs_per_dag: int = 400
    interval_hours: int = 1
    teams: int = 20
    failed_ratio: float = 0.03
    retry_percent: int = 1
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def task_instances(self) -> int:
        return self.dags * self.tasks * self.runs_per_dag

    def describe(self) -> str:
        every = "hourly" if self.interval_hours == 1 else f"every {self.interval_hours}h"
        return (
            f"{self.dags} DAGs x {self.tasks} tasks x {self.runs_per_dag} runs ({every}) = "
            f"{self.task_instances:,} task instances"
        )


@dataclass
class SeedReport:
    name: str
    spec: SeedSpec
    steps: dict[str, float]
    rows: dict[str, int]
    sizes_mb: dict[str, float]

    @property
    def total(self) -> float:
        return sum(self.steps.values())


# --- server and databases -------------------------------------------------------------------
def admin() -> psycopg.Connection:
    return psycopg.connect(f"{PG_BASE}/postgres", autocommit=True, connect_timeout=5)


def create_database(name: str) -> None:
    drop_database(name)
    with admin() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def drop_database(name: str) -> None:
    with admin() as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


def database_exists(name: str) -> bool:
    with admin() as conn:
        return (
            conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            is not None
        )


def dsn(name: str) -> str:
    """libpq URL of database `name` (psycopg)."""
    return f"{PG_BASE}/{name}"


def reader_url(name: str) -> str:
    """SQLAlchemy URL impactwatch reads the database with (psycopg 3)."""
    return "postgresql+psycopg://" + dsn(name).split("://", 1)[1]


def migrate(name: str) -> None:
    """Build Airflow's schema with Airflow's own `airflow db migrate`."""
    if not AIRFLOW_BIN.is_file():
        raise SystemExit(f"Airflow CLI not found at {AIRFLOW_BIN}; set $IMPACTWATCH_AIRFLOW_BIN")
    with tempfile.TemporaryDirectory(prefix="iw-bench-airflow-") as home:
        env = {
            **os.environ,
            "AIRFLOW_HOME": home,
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql+psycopg2://"
            + dsn(name).split("://", 1)[1],
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        }
        proc = subprocess.run(
            [str(AIRFLOW_BIN), "db", "migrate"],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout)[-3000:]
        raise RuntimeError(f"`airflow db migrate` on {name} exited {proc.returncode}:\n{tail}")


# --- the history ----------------------------------------------------------------------------
# A UUIDv7 from Unix seconds: 48 bits of milliseconds, version 7, random rest.
_UUID7 = """
CREATE FUNCTION pg_temp.uuid7(epoch float8) RETURNS uuid LANGUAGE sql VOLATILE AS $$
  SELECT (lpad(to_hex((epoch * 1000)::bigint), 12, '0') || '7'
          || substr(h, 14, 3) || substr(h, 17))::uuid
  FROM (SELECT replace(gen_random_uuid()::text, '-', '') AS h) g
$$
"""

_BASE_ROWS = """
INSERT INTO dag_bundle (name, active, last_refreshed) VALUES ('dags-folder', true, %(now)s)
ON CONFLICT (name) DO NOTHING;
INSERT INTO slot_pool (pool, slots, description, include_deferred)
VALUES ('heavy_etl', 16, 'Heavy ETL jobs', false) ON CONFLICT (pool) DO NOTHING;
INSERT INTO dag (dag_id, is_paused, is_stale, last_parsed_time, last_parse_duration, fileloc,
  relative_fileloc, bundle_name, owners, description, timetable_type, timetable_summary,
  partition_mapper_info, max_active_tasks, max_active_runs, max_consecutive_failed_dag_runs,
  has_task_concurrency_limits, has_import_errors, next_dagrun, next_dagrun_create_after)
SELECT 'dag_' || lpad(d::text, 5, '0'), d %% 97 = 13, false, %(now)s, 0.2 + random(),
  '/opt/airflow/dags/dag_' || lpad(d::text, 5, '0') || '.py',
  'dag_' || lpad(d::text, 5, '0') || '.py', 'dags-folder', 'airflow',
  'Synthetic benchmark DAG ' || d, 'airflow.timetables.trigger.CronTriggerTimetable',
  CASE WHEN %(step)s = 3600 THEN ((d * 37) %% 60) || ' * * * *'
       ELSE ((d * 37) %% 60) || ' ' || (((d * 37) / 60) %% 24) || ' * * *' END,
  '[]'::json, 16, 16, 0, false, false, %(now)s, %(now)s
FROM generate_series(0, %(dags)s - 1) d;
INSERT INTO dag_tag (name, dag_id)
SELECT 'team:team_' || lpad((d %% %(teams)s)::text, 2, '0'), 'dag_' || lpad(d::text, 5, '0')
FROM generate_series(0, %(dags)s - 1) d;
INSERT INTO dag_version (id, version_number, dag_id, bundle_name, created_at, last_updated)
SELECT pg_temp.uuid7(extract(epoch FROM %(now)s::timestamptz) - 400 * 86400), 1, dag_id,
  'dags-folder', %(now)s::timestamptz - interval '400 days', %(now)s
FROM dag;
INSERT INTO job (state, job_type, start_date, end_date, latest_heartbeat, executor_class,
  hostname, unixname)
VALUES
  ('success', 'SchedulerJob', %(now)s::timestamptz - interval '40 days',
   %(now)s::timestamptz - interval '9 days', %(now)s::timestamptz - interval '9 days',
   'LocalExecutor', 'scheduler-0', 'airflow'),
  ('running', 'SchedulerJob', %(now)s::timestamptz - interval '9 days', NULL, %(now)s,
   'LocalExecutor', 'scheduler-1', 'airflow'),
  ('running', 'TriggererJob', %(now)s::timestamptz - interval '9 days', NULL, %(now)s,
   NULL, 'triggerer-0', 'airflow'),
  ('running', 'DagProcessorJob', %(now)s::timestamptz - interval '9 days', NULL, %(now)s,
   NULL, 'dag-processor-0', 'airflow');
INSERT INTO log (dttm, dag_id, event, owner, extra)
SELECT %(now)s::timestamptz - (g || ' minutes')::interval, NULL,
  (ARRAY['cli_scheduler', 'cli_api_server', 'cli_triggerer', 'cli_dag_processor'])[g %% 4 + 1],
  'airflow', NULL
FROM generate_series(1, 1000) g;
"""

# One row per run with its timings; both dag_run and task_instance are made from it.
_RUNS = """
CREATE UNLOGGED TABLE _seed_run AS
SELECT s.*, to_timestamp(s.ra_epoch) AS ra,
  'scheduled__' || to_char(to_timestamp(s.ra_epoch) AT TIME ZONE 'UTC',
                           'YYYY-MM-DD"T"HH24:MI:SS') || '+00:00' AS run_id,
  s.ra_epoch + s.delay_s * 0.5 AS q_epoch,
  s.ra_epoch + s.delay_s AS st_epoch,
  CASE WHEN s.ra_epoch + s.delay_s + s.task_s * %(tasks)s + 2 > %(now_epoch)s THEN 'running'
       WHEN s.u < %(failed_ratio)s THEN 'failed' ELSE 'success' END AS state,
  CASE WHEN s.u < %(failed_ratio)s
       THEN floor(s.u / %(failed_ratio)s * %(tasks)s)::int ELSE -1 END AS failed_task
FROM (
  SELECT d, r, 'dag_' || lpad(d::text, 5, '0') AS dag_id,
    (floor((%(now_epoch)s - o) / %(step)s) * %(step)s + o
      - (%(runs)s - 1 - r)::float8 * %(step)s) AS ra_epoch,
    CASE WHEN random() < 0.02 THEN 60 + random() * 540 ELSE 1 + random() * 20 END AS delay_s,
    (20 + (d * 13) %% 40) * (0.8 + 0.4 * random()) AS task_s,
    random() AS u
  FROM generate_series(0, %(dags)s - 1) d
  CROSS JOIN LATERAL (SELECT ((d * 37) %% (%(step)s / 60)) * 60.0 AS o) off
  CROSS JOIN generate_series(0, %(runs)s - 1) r
) s;
ALTER TABLE _seed_run ADD COLUMN en_epoch float8;
UPDATE _seed_run SET en_epoch = CASE
  WHEN state = 'failed' THEN st_epoch + task_s * (failed_task + 1) + 1
  WHEN state = 'success' THEN st_epoch + task_s * %(tasks)s + 2 END;
"""

_DAG_RUNS = """
INSERT INTO dag_run (dag_id, queued_at, logical_date, start_date, end_date, state, run_id,
  creating_job_id, run_type, triggered_by, conf, data_interval_start, data_interval_end,
  run_after, last_scheduling_decision, log_template_id, created_at, updated_at, clear_number,
  bundle_version, span_status, created_dag_version_id)
SELECT s.dag_id, to_timestamp(s.q_epoch), s.ra, to_timestamp(s.st_epoch),
  to_timestamp(s.en_epoch), s.state, s.run_id, 2, 'scheduled', 'timetable', '{}'::jsonb,
  s.ra, s.ra, s.ra, to_timestamp(coalesce(s.en_epoch, %(now_epoch)s)),
  (SELECT max(id) FROM log_template), to_timestamp(s.q_epoch),
  to_timestamp(coalesce(s.en_epoch, %(now_epoch)s)), 0, NULL, 'not_started', v.id
FROM _seed_run s JOIN dag_version v ON v.dag_id = s.dag_id
ORDER BY s.ra_epoch, s.d
"""

_TASK_INSTANCES = """
INSERT INTO task_instance (id, task_id, dag_id, run_id, map_index, start_date, end_date,
  duration, state, try_number, max_tries, hostname, unixname, pool, pool_slots, queue,
  priority_weight, operator, custom_operator_name, queued_dttm, scheduled_dttm,
  queued_by_job_id, pid, executor, updated_at, span_status, dag_version_id)
SELECT
  pg_temp.uuid7(CASE WHEN x.retried THEN x.t_start - 30 ELSE x.q_epoch END),
  x.task_id, x.dag_id, x.run_id, -1,
  CASE WHEN x.st IN ('success', 'failed', 'running') THEN to_timestamp(x.t_start) END,
  CASE WHEN x.st IN ('success', 'failed') THEN to_timestamp(x.t_end) END,
  CASE WHEN x.st IN ('success', 'failed') THEN x.t_end - x.t_start END,
  x.st, CASE WHEN x.retried THEN 2 WHEN x.st IS NULL THEN 0 ELSE 1 END, 2,
  CASE WHEN x.st IN ('success', 'failed', 'running') THEN 'worker-' || (x.i %% 4) END,
  'airflow', CASE WHEN x.i %% 5 = 4 THEN 'heavy_etl' ELSE 'default_pool' END, 1, 'default',
  %(tasks)s - x.i,
  (ARRAY['PythonOperator', 'BashOperator', 'SQLExecuteQueryOperator'])[x.i %% 3 + 1],
  (ARRAY['@task', 'BashOperator', 'SQLExecuteQueryOperator'])[x.i %% 3 + 1],
  CASE WHEN x.st IN ('success', 'failed', 'running', 'queued')
       THEN to_timestamp(x.t_start - x.wait) END,
  CASE WHEN x.st IS NOT NULL AND x.st <> 'upstream_failed'
       THEN to_timestamp(x.t_start - x.wait - 0.5) END,
  2, CASE WHEN x.st IN ('success', 'failed', 'running') THEN 1000 + x.i END, NULL,
  to_timestamp(CASE WHEN x.st IN ('success', 'failed') THEN x.t_end
                    WHEN x.st = 'running' THEN x.t_start ELSE x.q_epoch END),
  'not_started', x.dag_version_id
FROM (
  SELECT a.*,
    CASE
      WHEN a.state = 'success' THEN 'success'
      WHEN a.state = 'failed' AND a.i < a.failed_task THEN 'success'
      WHEN a.state = 'failed' AND a.i = a.failed_task THEN 'failed'
      WHEN a.state = 'failed' THEN 'upstream_failed'
      WHEN a.t_end <= %(now_epoch)s THEN 'success'
      WHEN a.t_start <= %(now_epoch)s THEN 'running'
      WHEN a.t_start - a.wait <= %(now_epoch)s THEN 'queued'
      WHEN a.t_start - a.wait - a.task_s <= %(now_epoch)s THEN 'scheduled'
    END AS st,
    (a.state = 'success' OR (a.state = 'failed' AND a.i <= a.failed_task))
      AND abs(hashtext(a.run_id || a.task_id || a.dag_id)) %% 100 < %(retry_percent)s
      AS retried
  FROM (
    SELECT s.dag_id, s.run_id, s.state, s.failed_task, s.q_epoch, s.task_s, i,
      'task_' || lpad(i::text, 2, '0') AS task_id,
      s.st_epoch + s.task_s * i + 0.5 AS t_start,
      s.st_epoch + s.task_s * i + 0.5 + s.task_s * (0.6 + 0.35 * random()) AS t_end,
      CASE WHEN i %% 5 = 4 THEN 1 + random() * 60 ELSE 0.2 + random() * 3 END AS wait,
      v.id AS dag_version_id
    FROM _seed_run s
    JOIN dag_version v ON v.dag_id = s.dag_id
    CROSS JOIN generate_series(0, %(tasks)s - 1) i
  ) a
) x
ORDER BY x.q_epoch, x.dag_id, x.i
"""

_HISTORY = """
INSERT INTO task_instance_history (task_instance_id, task_id, dag_id, run_id, map_index,
  try_number, start_date, end_date, duration, state, max_tries, hostname, unixname, pool,
  pool_slots, queue, priority_weight, operator, custom_operator_name, queued_dttm,
  scheduled_dttm, queued_by_job_id, pid, executor, updated_at, span_status, dag_version_id)
SELECT pg_temp.uuid7(extract(epoch FROM ti.queued_dttm) - 120), ti.task_id, ti.dag_id,
  ti.run_id, ti.map_index, 1, ti.start_date - interval '75 seconds',
  ti.start_date - interval '45 seconds', 30, 'failed', ti.max_tries, ti.hostname, ti.unixname,
  ti.pool, ti.pool_slots, ti.queue, ti.priority_weight, ti.operator, ti.custom_operator_name,
  ti.queued_dttm - interval '80 seconds', ti.scheduled_dttm - interval '80 seconds',
  ti.queued_by_job_id, ti.pid, ti.executor, ti.start_date - interval '45 seconds',
  'not_started', ti.dag_version_id
FROM task_instance ti WHERE ti.try_number = 2
"""

_XCOMS = """
INSERT INTO xcom (dag_run_id, task_id, map_index, key, dag_id, run_id, value, timestamp)
SELECT dr.id, ti.task_id, -1, 'return_value', dr.dag_id, dr.run_id,
  jsonb_build_object(
    'rows', (random() * 1e6)::int,
    'path', 's3://lake/' || dr.dag_id || '/' || dr.run_id || '.parquet',
    'sample', CASE WHEN substr(dr.dag_id, 5)::int %% 17 = 0
                   THEN repeat(md5(dr.run_id), 600) ELSE '' END),
  ti.end_date
FROM dag_run dr
JOIN task_instance ti
  ON ti.dag_id = dr.dag_id AND ti.run_id = dr.run_id AND ti.task_id = 'task_00'
  AND ti.map_index = -1
WHERE ti.state = 'success'
"""

_ASSETS = """
INSERT INTO asset (name, uri, "group", extra, created_at, updated_at)
SELECT dag_id || '_output', 's3://lake/' || dag_id || '/output', 'asset', '{}'::json,
  %(now)s, %(now)s
FROM dag ORDER BY dag_id;
INSERT INTO task_outlet_asset_reference (asset_id, dag_id, task_id, created_at, updated_at)
SELECT a.id, d.dag_id, %(last_task)s, %(now)s, %(now)s
FROM dag d JOIN asset a ON a.name = d.dag_id || '_output';
INSERT INTO asset_event (asset_id, extra, source_task_id, source_dag_id, source_run_id,
  source_map_index, timestamp)
SELECT a.id, '{}'::json, %(last_task)s, s.dag_id, s.run_id, -1, to_timestamp(s.en_epoch)
FROM _seed_run s JOIN asset a ON a.name = s.dag_id || '_output'
WHERE s.state = 'success'
ORDER BY s.en_epoch;
"""

_COUNTED = (
    "dag",
    "dag_run",
    "task_instance",
    "task_instance_history",
    "xcom",
    "asset_event",
    "log",
    "job",
)


def _secondary_indexes(conn: psycopg.Connection, table: str) -> list[tuple[str, str]]:
    """(name, CREATE INDEX ...) of `table`'s indexes that back no constraint."""
    rows = conn.execute(
        "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.tablename = %s"
        " AND i.schemaname = 'public' AND NOT EXISTS (SELECT 1 FROM pg_constraint c"
        " WHERE c.conrelid = %s::regclass AND c.conname = i.indexname)",
        (table, table),
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


def seed(name: str, spec: SeedSpec, log: bool = True) -> dict[str, float]:
    """Fill a migrated database with `spec`'s history; returns seconds per step."""
    steps: dict[str, float] = {}
    now_epoch = spec.now.timestamp()
    params = {
        "now": spec.now,
        "now_epoch": now_epoch,
        "dags": spec.dags,
        "tasks": spec.tasks,
        "runs": spec.runs_per_dag,
        "step": spec.interval_hours * 3600,
        "teams": spec.teams,
        "failed_ratio": spec.failed_ratio,
        "retry_percent": spec.retry_percent,
        "last_task": f"task_{spec.tasks - 1:02d}",
    }

    def step(label: str, statement: str) -> None:
        t0 = time.perf_counter()
        for part in statement.split(";\n"):
            if part.strip():
                conn.execute(part, params)
        steps[label] = time.perf_counter() - t0
        if log:
            print(f"  {label:<24} {steps[label]:7.1f} s", file=sys.stderr, flush=True)

    with psycopg.connect(dsn(name), autocommit=True) as conn:
        # Bulk load: no FK triggers, secondary indexes built once at the end (same definitions).
        conn.execute("SET session_replication_role = replica")
        conn.execute("SET maintenance_work_mem = '1GB'")
        conn.execute("SET synchronous_commit = off")
        conn.execute("SELECT setseed(0.4242)")
        conn.execute(_UUID7)
        for statement in _BASE_ROWS.split(";\n"):
            if statement.strip():
                conn.execute(statement, params)
        step("runs (plan)", _RUNS)
        indexes = _secondary_indexes(conn, "task_instance")
        for index, _ in indexes:
            conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(index)))
        step("dag_run", _DAG_RUNS)
        step("task_instance", _TASK_INSTANCES)
        t0 = time.perf_counter()
        for _, create in indexes:
            conn.execute(create)
        steps["task_instance indexes"] = time.perf_counter() - t0
        if log:
            seconds = steps["task_instance indexes"]
            print(f"  {'task_instance indexes':<24} {seconds:7.1f} s", file=sys.stderr)
        step("task_instance_history", _HISTORY)
        step("xcom", _XCOMS)
        step("assets", _ASSETS)
        conn.execute("DROP TABLE _seed_run")
        step("vacuum analyze", "VACUUM ANALYZE")
    return steps


def counts(name: str) -> tuple[dict[str, int], dict[str, float]]:
    """Rows per table and total size (table + indexes + TOAST) in MB."""
    rows: dict[str, int] = {}
    sizes: dict[str, float] = {}
    with psycopg.connect(dsn(name), autocommit=True) as conn:
        for table in _COUNTED:
            rows[table] = conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
            ).fetchone()[0]
            sizes[table] = (
                conn.execute("SELECT pg_total_relation_size(%s)", (table,)).fetchone()[0] / 2**20
            )
    return rows, sizes


def build(name: str, spec: SeedSpec, log: bool = True) -> SeedReport:
    """Create `name` (dropping a leftover), migrate it with Airflow, seed `spec`, vacuum."""
    if log:
        print(f"seeding {name}: {spec.describe()}", file=sys.stderr, flush=True)
    steps: dict[str, float] = {}
    t0 = time.perf_counter()
    create_database(name)
    migrate(name)
    steps["airflow db migrate"] = time.perf_counter() - t0
    if log:
        seconds = steps["airflow db migrate"]
        print(f"  {'airflow db migrate':<24} {seconds:7.1f} s", file=sys.stderr)
    steps.update(seed(name, spec, log))
    rows, sizes = counts(name)
    return SeedReport(name, spec, steps, rows, sizes)


# --- what a scheduler writes between two polls (bench_poller, bench_scrape) ------------------
class Activity:
    """Writes to the Airflow DB what a scheduler and its workers would between two polls."""

    def __init__(self, name: str, spec: SeedSpec) -> None:
        self.conn = psycopg.connect(dsn(name))
        self.conn.execute(_UUID7)
        self.interval = timedelta(hours=spec.interval_hours)
        self.tasks = spec.tasks
        self.last_task = f"task_{spec.tasks - 1:02d}"
        rows = self.conn.execute("SELECT dag_id, max(run_after) FROM dag_run GROUP BY dag_id")
        self.next_slot = {dag_id: last + self.interval for dag_id, last in rows}
        running = self.conn.execute(
            "SELECT dag_id, run_id FROM dag_run WHERE state = 'running' ORDER BY start_date"
        ).fetchall()
        self.running: deque[tuple[str, str]] = deque((d, r) for d, r in running)
        self.conn.commit()
        self.cycle = 0

    def step(self) -> int:
        """One scheduler loop's worth of writes, committed; returns the rows written."""
        now = datetime.now(UTC)
        p: dict[str, Any] = {"now": now, "last_task": self.last_task, "tasks": self.tasks}
        changed = 0
        with self.conn.transaction():
            if self.running:  # the oldest run in flight finishes (every 10th fails)
                p["dag_id"], p["run_id"] = self.running.popleft()
                p["state"] = "failed" if self.cycle % 10 == 9 else "success"
                changed += self._exec(_FINISH_TASKS, p)
                changed += self._exec(_FINISH_RUN, p)
                changed += self._exec(_XCOM, p)
                if p["state"] == "success":
                    changed += self._exec(_ASSET_EVENT, p)
            for k in range(3):  # three task instances of runs in flight move on
                if self.running:
                    p["dag_id"], p["run_id"] = self.running[(self.cycle + k) % len(self.running)]
                    changed += self._exec(_ADVANCE, p)
            dag_id = min(self.next_slot, key=self.next_slot.__getitem__)  # next one due
            slot = self.next_slot[dag_id]
            self.next_slot[dag_id] = slot + self.interval
            p.update(dag_id=dag_id, slot=slot, run_id=f"scheduled__{slot.isoformat()}")
            changed += self._exec(_NEW_RUN, p)
            changed += self._exec(_NEW_TASKS, p)
            changed += self._exec(_HEARTBEAT, p)
            self.running.append((dag_id, p["run_id"]))
        self.cycle += 1
        return changed

    def _exec(self, statement: str, params: dict[str, Any]) -> int:
        return max(self.conn.execute(statement, params).rowcount, 0)

    def close(self) -> None:
        self.conn.close()


_FINISH_TASKS = """
UPDATE task_instance SET
  state = CASE WHEN %(state)s = 'failed' AND task_id = %(last_task)s::text THEN 'failed'
               ELSE 'success' END,
  try_number = greatest(try_number, 1),
  scheduled_dttm = coalesce(scheduled_dttm, %(now)s - interval '20 seconds'),
  queued_dttm = coalesce(queued_dttm, %(now)s - interval '15 seconds'),
  start_date = coalesce(start_date, %(now)s - interval '10 seconds'),
  end_date = %(now)s,
  duration = extract(epoch FROM %(now)s - coalesce(start_date, %(now)s - interval '10 seconds')),
  hostname = 'worker-0', updated_at = %(now)s
WHERE dag_id = %(dag_id)s::text AND run_id = %(run_id)s::text
  AND (state IS NULL OR state IN ('scheduled', 'queued', 'running'))
"""
_FINISH_RUN = """
UPDATE dag_run SET state = %(state)s, end_date = %(now)s, updated_at = %(now)s,
  last_scheduling_decision = %(now)s
WHERE dag_id = %(dag_id)s::text AND run_id = %(run_id)s::text
"""
_XCOM = """
INSERT INTO xcom (dag_run_id, task_id, map_index, key, dag_id, run_id, value, timestamp)
SELECT id, 'task_00', -1, 'return_value', dag_id, run_id, '{"rows": 1234}'::jsonb, %(now)s
FROM dag_run WHERE dag_id = %(dag_id)s::text AND run_id = %(run_id)s::text
ON CONFLICT DO NOTHING
"""
_ASSET_EVENT = """
INSERT INTO asset_event (asset_id, extra, source_task_id, source_dag_id, source_run_id,
  source_map_index, timestamp)
SELECT id, '{}'::json, %(last_task)s::text, %(dag_id)s::text, %(run_id)s::text, -1, %(now)s
FROM asset WHERE name = %(dag_id)s::text || '_output'
"""
_ADVANCE = """
WITH nxt AS (
  SELECT id, state FROM task_instance
  WHERE dag_id = %(dag_id)s::text AND run_id = %(run_id)s::text
    AND (state IS NULL OR state IN ('scheduled', 'queued', 'running'))
  ORDER BY task_id LIMIT 1
)
UPDATE task_instance ti SET
  state = CASE nxt.state WHEN 'running' THEN 'success' WHEN 'queued' THEN 'running'
                         WHEN 'scheduled' THEN 'queued' ELSE 'scheduled' END,
  try_number = greatest(ti.try_number, 1),
  scheduled_dttm = coalesce(ti.scheduled_dttm, %(now)s),
  queued_dttm = CASE WHEN nxt.state = 'scheduled' THEN %(now)s ELSE ti.queued_dttm END,
  start_date = CASE WHEN nxt.state = 'queued' THEN %(now)s ELSE ti.start_date END,
  end_date = CASE WHEN nxt.state = 'running' THEN %(now)s ELSE ti.end_date END,
  duration = CASE WHEN nxt.state = 'running'
                  THEN extract(epoch FROM %(now)s - ti.start_date) ELSE ti.duration END,
  updated_at = %(now)s
FROM nxt WHERE ti.id = nxt.id
"""
_NEW_RUN = """
INSERT INTO dag_run (dag_id, queued_at, logical_date, start_date, state, run_id,
  creating_job_id, run_type, triggered_by, conf, data_interval_start, data_interval_end,
  run_after, last_scheduling_decision, log_template_id, created_at, updated_at, clear_number,
  span_status, created_dag_version_id)
SELECT %(dag_id)s::text, %(now)s - interval '1 second', %(slot)s, %(now)s, 'running',
  %(run_id)s::text, 2, 'scheduled', 'timetable', '{}'::jsonb, %(slot)s, %(slot)s, %(slot)s, %(now)s,
  (SELECT max(id) FROM log_template), %(now)s - interval '1 second', %(now)s, 0,
  'not_started', (SELECT id FROM dag_version WHERE dag_id = %(dag_id)s::text
                  ORDER BY version_number DESC LIMIT 1)
"""
_NEW_TASKS = """
INSERT INTO task_instance (id, task_id, dag_id, run_id, map_index, state, try_number,
  max_tries, unixname, pool, pool_slots, queue, priority_weight, operator,
  custom_operator_name, queued_dttm, scheduled_dttm, queued_by_job_id, updated_at,
  span_status, dag_version_id)
SELECT pg_temp.uuid7(extract(epoch FROM %(now)s::timestamptz)), 'task_' || lpad(i::text, 2, '0'),
  %(dag_id)s::text, %(run_id)s::text, -1,
  CASE WHEN i = 0 THEN 'queued' WHEN i = 1 THEN 'scheduled' END,
  CASE WHEN i < 2 THEN 1 ELSE 0 END, 2, 'airflow',
  CASE WHEN i %% 5 = 4 THEN 'heavy_etl' ELSE 'default_pool' END, 1, 'default', %(tasks)s - i,
  (ARRAY['PythonOperator', 'BashOperator', 'SQLExecuteQueryOperator'])[i %% 3 + 1],
  (ARRAY['@task', 'BashOperator', 'SQLExecuteQueryOperator'])[i %% 3 + 1],
  CASE WHEN i = 0 THEN %(now)s END, CASE WHEN i < 2 THEN %(now)s END, 2, %(now)s,
  'not_started', (SELECT id FROM dag_version WHERE dag_id = %(dag_id)s::text
                  ORDER BY version_number DESC LIMIT 1)
FROM generate_series(0, %(tasks)s - 1) i
"""
_HEARTBEAT = """
UPDATE job SET latest_heartbeat = %(now)s WHERE job_type = 'SchedulerJob' AND state = 'running'
"""


def spec_from_args(args: argparse.Namespace) -> SeedSpec:
    if args.small:
        return SeedSpec(dags=10, tasks=args.tasks, runs_per_dag=40)
    many = args.dags >= 1000
    interval = args.interval_hours or (24 if many else 1)
    if args.runs_per_dag:
        runs = args.runs_per_dag
    elif args.task_instances:
        runs = math.ceil(args.task_instances / (args.dags * args.tasks))
    else:
        runs = 4 if many else 400
    return SeedSpec(dags=args.dags, tasks=args.tasks, runs_per_dag=runs, interval_hours=interval)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dags", type=int, default=100)
    parser.add_argument("--tasks", type=int, default=25)
    parser.add_argument("--task-instances", type=int, help="sets runs per DAG")
    parser.add_argument("--runs-per-dag", type=int)
    parser.add_argument(
        "--interval-hours", type=int, help="schedule: 1 (default), 24 with --dags >= 1000"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    parser.add_argument("--db", default="iw_bench_seed", help="database to (re)create")
    parser.add_argument("--small", action="store_true", help="10 DAGs x 40 runs, seconds")
    parser.add_argument("--keep", action="store_true", help="keep the database")
    args = parser.parse_args(argv)
    spec = spec_from_args(args)
    try:
        report = build(args.db, spec)
        print()
        print(f"database {args.db}: {spec.describe()}")
        print(f"{'table':<24} {'rows':>12} {'MB':>9}")
        for table, n in report.rows.items():
            print(f"{table:<24} {n:>12,} {report.sizes_mb[table]:>9.1f}")
        print()
        print(f"{'step':<24} {'seconds':>9}")
        for label, seconds in report.steps.items():
            print(f"{label:<24} {seconds:>9.1f}")
        print(f"{'total':<24} {report.total:>9.1f}")
        tis = report.rows["task_instance"]
        print(f"seeded {tis:,} task instances in {report.total:.1f} s")
    finally:
        if not args.keep:
            drop_database(args.db)
    if args.keep:
        print(f"kept: {reader_url(args.db)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
