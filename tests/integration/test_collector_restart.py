"""Counters survive restarts, on real Airflow runs: a collector stopped between two scrapes
while runs finish, started again on its state DB; and one whose process dies between the
state DB's commit and the metrics state taking it."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from impactwatch.collector.state.store import Changes, Counts
from impactwatch.contract import metrics as c
from impactwatch.devtools.airflow_home import AirflowHome, RunSpec
from tests.integration.helpers import catch_up, copy_of, make_service, serving, sql

pytestmark = pytest.mark.integration
TOKEN = "restart-intake-token"
COUNTED = tuple(spec for spec in c.BUSINESS_METRICS if spec.kind in ("counter", "histogram"))
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(base: str) -> Samples:
    """Every counter and histogram sample of GET /metrics."""
    with urllib.request.urlopen(f"{base}/metrics", timeout=30) as resp:
        text = resp.read().decode()
    families = {spec.family for spec in COUNTED}
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        if family.name in families
        for s in family.samples
    }


def count(samples: Samples, name: str, **labels: str) -> float:
    """Sum of `name`'s samples whose labels include `labels`."""
    return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls))


def wait_ready(base: str, timeout: float = 20.0) -> float:
    """Seconds until /healthz says ready; checks what it says meanwhile."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=2) as resp:
                assert json.load(resp)["status"] == "ok"
                return time.monotonic() - started
        except urllib.error.HTTPError as exc:
            assert (exc.code, json.load(exc)) == (503, {"status": "starting"})
            time.sleep(0.05)
    raise AssertionError("the collector never became ready")


def airflow_totals(url: str) -> dict[tuple[str, str], int]:
    """Airflow's own count of finished runs by (dag_id, state)."""
    rows = sql(
        url,
        "SELECT dag_id, state, count(*) FROM dag_run WHERE state IN ('success', 'failed')"
        " GROUP BY dag_id, state",
    )
    return {(d, s): n for d, s, n in rows}


def assert_equals_airflow(samples: Samples, url: str) -> None:
    totals = airflow_totals(url)
    runs = c.DAG_RUN_DURATION.series("count")
    for (dag_id, state), n in totals.items():
        assert count(samples, runs, dag_id=dag_id, state=state) == n, (dag_id, state)
        priced = count(samples, c.DAG_RUN_COST.series("count"), dag_id=dag_id)
        assert priced == sum(m for (d, _s), m in totals.items() if d == dag_id), dag_id
    assert count(samples, runs) == sum(totals.values())


def runner_on(url: str, folder: Path) -> AirflowHome:
    return AirflowHome(folder, url)


def test_a_restart_between_scrapes_while_runs_finish_loses_and_doubles_nothing(
    pg_base_url: str, airflow_pg_url: str, tmp_path: Path
) -> None:
    with copy_of(pg_base_url, airflow_pg_url) as url:
        service = make_service(url, tmp_path)
        try:
            catch_up(service)
            with serving(service, TOKEN) as base:
                wait_ready(base)
                before = scrape(base)
        finally:
            service.close()
        assert_equals_airflow(before, url)
        # while the collector is down, Airflow runs DAGs: a success after a retry, a failure
        runner_on(url, tmp_path / "airflow").run_dags(
            [
                RunSpec("regulatory_submission", conf={"fail": ["submit_to_regulator"]},
                        run_id="manual__while_down_1", expect="success"),
                RunSpec("market_data_ingest", conf={"fail": ["validate_market_data"]},
                        run_id="manual__while_down_2", expect="failed"),
            ]
        )  # fmt: skip
        service = make_service(url, tmp_path)  # the same state DB: a plain restart
        try:
            with serving(service, TOKEN) as base:
                took = wait_ready(base)
                assert took < 10
                restarted = scrape(base)  # before any poll: exactly what was counted
                assert restarted == before
                catch_up(service)
                after = scrape(base)
        finally:
            service.close()
        missing = [k for k in before if k not in after]
        assert not missing, missing
        backwards = {k: (v, after[k]) for k, v in before.items() if after[k] < v}
        assert not backwards, backwards
        assert_equals_airflow(after, url)
        runs = c.DAG_RUN_DURATION.series("count")
        for dag_id in ("regulatory_submission", "market_data_ingest"):
            assert count(after, runs, dag_id=dag_id) == count(before, runs, dag_id=dag_id) + 1


def test_a_collector_killed_between_commit_and_apply_counts_each_run_once(
    pg_base_url: str, airflow_pg_url: str, tmp_path: Path
) -> None:
    with copy_of(pg_base_url, airflow_pg_url) as url:
        dying = make_service(url, tmp_path)
        stage = dying.state.stage
        taken: list[int] = []

        def killed(changes: list[Changes], now: float) -> tuple[Counts, Callable[[], None]]:
            staged = stage(changes, now)  # saved with the facts, never taken: the process died
            taken.append(len(staged.rows))
            return staged.counts(), lambda: None

        dying._stage = killed  # type: ignore[method-assign]
        try:
            catch_up(dying)
            with serving(dying, TOKEN) as base:
                lost = scrape(base)
        finally:
            dying.close()
        assert sum(taken) > 0
        assert count(lost, c.DAG_RUN_DURATION.series("count")) == 0  # the dead process's view
        service = make_service(url, tmp_path)
        try:
            with serving(service, TOKEN) as base:
                wait_ready(base)
                assert_equals_airflow(scrape(base), url)  # restored from what was committed
                catch_up(service)  # and read again: already observed, not counted twice
                assert_equals_airflow(scrape(base), url)
        finally:
            service.close()
