"""Shared pieces of the example fintech DAGs: start date, assets and scripted behaviour.

Every task calls :func:`scripted` first, so a run's ``conf`` can make tasks slow or failing:

- ``{"sleep": 1.5}``: each task sleeps that many seconds (default 0);
- ``{"fail": ["task_id", ...]}``: those tasks raise on their first try (a task with retries
  then succeeds on the next one);
- ``{"fail_always": ["task_id", ...]}``: those tasks raise on every try.

A mapped task is named ``task_id`` (every map index) or ``task_id[2]`` (one map index).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from airflow.sdk import Asset, get_current_context

START_DATE = datetime(2025, 1, 1, tzinfo=UTC)

MARKET_DATA = Asset(name="market_data", uri="s3://fintech-lake/market/prices")
CUSTOMER_RISK_SCORES = Asset(
    name="customer_risk_scores",
    uri="s3://fintech-lake/risk/customer_scores",
    extra={"title": "Customer risk scores", "team": "risk", "freshness": "90m"},
)


class ScriptedFailure(RuntimeError):
    """Raised by a task that ``dag_run.conf`` told to fail."""


def scripted() -> dict:
    """Apply the run's ``sleep`` / ``fail`` / ``fail_always`` to the running task; return conf."""
    context = get_current_context()
    conf = context["dag_run"].conf or {}
    ti = context["ti"]
    names = {ti.task_id}
    if ti.map_index is not None and ti.map_index >= 0:
        names.add(f"{ti.task_id}[{ti.map_index}]")
    seconds = float(conf.get("sleep", 0) or 0)
    if seconds > 0:
        time.sleep(seconds)
    if names & set(conf.get("fail_always", ())):
        raise ScriptedFailure(f"{ti.task_id} told to fail on every try by dag_run.conf")
    if names & set(conf.get("fail", ())) and ti.try_number <= 1:
        raise ScriptedFailure(f"{ti.task_id} told to fail its first try by dag_run.conf")
    return conf


def burn_cpu(seconds: float) -> float:
    """Spin on the CPU for ``seconds`` of process time; return the process time used."""
    started = time.process_time()
    x = 0
    while time.process_time() - started < seconds:
        for i in range(10_000):
            x ^= i * i
    return time.process_time() - started
