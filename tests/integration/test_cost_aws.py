"""Cost against AWS, played by moto in server mode on loopback through real boto3 clients:
instance types from EC2 (read once), the bill from Cost Explorer (answers set through moto's
API) reconciled with estimates from a real state DB, and the failures: access denied (moto's
IAM enforcement), throttling (a stand-in answering as AWS does), never a crash, never a key in
a log line. Also the `impactwatch cost` commands, as a user runs them."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from botocore.config import Config
from prometheus_client import CollectorRegistry

from impactwatch.catalog.model import Catalog
from impactwatch.collector.cost.instances import (
    clear_cache,
    resolve_instance_types,
    resolve_or_warn,
)
from impactwatch.collector.cost.pricing import Pricing
from impactwatch.collector.cost.reconcile_job import ReconcileCollector, ReconcileJob
from impactwatch.collector.events import Batch, TaskTry
from impactwatch.collector.state.store import Store, make_engine
from tests.support.moto_server import (
    ACCESS_KEY,
    SECRET_KEY,
    MotoServer,
    aws_env,
    free_port,
    moto_server,
)

pytestmark = pytest.mark.integration

TODAY = date(2026, 11, 24)
NOW = datetime(2026, 11, 24, 6, tzinfo=UTC).timestamp()
CATALOG_YAML = """\
teams: {platform: {slack_channel: "#p"}, risk: {slack_channel: "#r"}}
pipelines:
  nightly_heavy_etl: {team: platform, cost_basis: reserved}
  risk_scoring: {team: risk}
cost:
  rates: {cpu_hour: 0.04, memory_gb_hour: 0.005}
  pools: {heavy_etl: {cpu: 4, memory_gb: 8}}
defaults: {team: platform}
"""


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    with moto_server() as server:
        yield server


@pytest.fixture
def aws(moto: MotoServer) -> MotoServer:
    moto.reset()
    clear_cache()
    return moto


def catalog() -> Catalog:
    from impactwatch.catalog.loader import parse_catalog

    parsed, problems = parse_catalog(CATALOG_YAML)
    assert parsed is not None and not problems
    return parsed


def at(day: date, hour: float) -> float:
    return datetime.combine(day, datetime.min.time(), UTC).timestamp() + hour * 3600


def state_db(tmp_path: Path, day: date) -> Store:
    """Tries of `day`: heavy_etl 5 h in its pool ($0.20/h: $1.00); risk_scoring 2 h across the
    midnight before `day` at the default 1 CPU, 2 GiB ($0.05/h: $0.05 on `day`)."""
    store = Store(make_engine(f"sqlite:///{tmp_path / 'state.db'}"))
    heavy = TaskTry(
        dag_id="nightly_heavy_etl",
        run_id="r1",
        task_id="transform",
        map_index=-1,
        try_number=1,
        state="success",
        start=at(day, 1),
        end=at(day, 6),
        duration=5 * 3600.0,
        pool="heavy_etl",
    )
    risk = TaskTry(
        dag_id="risk_scoring",
        run_id="r1",
        task_id="score",
        map_index=-1,
        try_number=1,
        state="success",
        start=at(day, -1),
        end=at(day, 1),
        duration=2 * 3600.0,
        pool="default_pool",
    )
    elsewhere = TaskTry(  # the day before: outside the window
        dag_id="nightly_heavy_etl",
        run_id="r0",
        task_id="transform",
        map_index=-1,
        try_number=1,
        state="success",
        start=at(day, -20),
        end=at(day, -15),
        duration=5 * 3600.0,
        pool="heavy_etl",
    )
    store.ingest(Batch(task_tries=[heavy, risk, elsewhere]))
    return store


def bill(day: date, groups: dict[str, str], token: str | None = None) -> dict:
    result = {
        "ResultsByTime": [
            {
                "TimePeriod": {"Start": day.isoformat(), "End": (day + timedelta(1)).isoformat()},
                "Total": {},
                "Groups": [
                    {
                        "Keys": [f"airflow_dag_id${value}"],
                        "Metrics": {"UnblendedCost": {"Amount": amount, "Unit": "USD"}},
                    }
                    for value, amount in groups.items()
                ],
                "Estimated": False,
            }
        ],
        "DimensionValueAttributes": [],
    }
    if token:
        result["NextPageToken"] = token
    return result


def two_pages(aws: MotoServer, day: date) -> None:
    aws.set_cost_and_usage(
        bill(day, {"nightly_heavy_etl": "2.30", "": "5.00"}, token="page-2"),
        bill(day, {"risk_scoring": "0.02", "ghost_dag": "1.00"}),
    )


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


# -- Cost Explorer ------------------------------------------------------------------------------
def test_the_bill_is_reconciled_with_the_estimate_per_dag(aws: MotoServer, tmp_path: Path) -> None:
    store = state_db(tmp_path, TODAY - timedelta(1))
    two_pages(aws, TODAY - timedelta(1))
    job = ReconcileJob(
        catalog(), store.engine, ce_client=lambda: aws.client("ce"), clock=lambda: NOW
    )
    result = job.run_once()
    assert result is not None and result.days == (TODAY - timedelta(1),)
    rows = {r.dag_id: r for r in result.rows}
    assert rows["nightly_heavy_etl"].estimated == Decimal("1.00")
    assert rows["nightly_heavy_etl"].ratio == Decimal("2.3")
    assert rows["risk_scoring"].estimated == Decimal("0.05")  # half of the run spanning midnight
    assert rows["risk_scoring"].ratio == Decimal("0.4")
    assert result.unattributed == Decimal(6)  # untagged + a tag naming no known DAG

    registry = CollectorRegistry(auto_describe=False)
    registry.register(ReconcileCollector(job))
    heavy = {"dag_id": "nightly_heavy_etl", "team": "platform"}
    assert sample(registry, "impactwatch_cost_model_ratio", **heavy) == pytest.approx(2.3)
    assert sample(registry, "impactwatch_cost_actual_daily_dollars", **heavy) == 2.3
    assert sample(registry, "impactwatch_cost_estimated_daily_dollars", **heavy) == 1.0
    risk = {"dag_id": "risk_scoring", "team": "risk"}
    assert sample(registry, "impactwatch_cost_model_ratio", **risk) == pytest.approx(0.4)
    assert sample(registry, "impactwatch_cost_unattributed_daily_dollars") == 6.0
    assert sample(registry, "impactwatch_cost_reconcile_last_success_timestamp_seconds") == NOW
    day = sample(registry, "impactwatch_cost_reconcile_day_timestamp_seconds")
    assert day == at(TODAY - timedelta(1), 0)
    errors = "impactwatch_cost_reconcile_errors_total"
    assert sample(registry, errors, reason="access_denied") == 0


def test_access_denied_is_one_line_and_a_metric_never_a_crash_nor_a_key(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with moto_server(INITIAL_NO_AUTH_ACTION_COUNT="2") as enforcing:  # IAM enforced after 2
        iam = enforcing.client("iam")
        iam.create_user(UserName="reader")  # no policy: may do nothing
        key = iam.create_access_key(UserName="reader")["AccessKey"]
        creds = {
            "aws_access_key_id": key["AccessKeyId"],
            "aws_secret_access_key": key["SecretAccessKey"],
        }
        store = state_db(tmp_path, TODAY - timedelta(1))
        job = ReconcileJob(
            catalog(),
            store.engine,
            ce_client=lambda: enforcing.client("ce", **creds),
            clock=lambda: NOW,
        )
        with caplog.at_level(logging.WARNING):
            assert job.run_once() is None
            assert job.run_once() is None
            denied = catalog().model_copy(
                update={
                    "cost": Catalog.model_validate(
                        {
                            "cost": {
                                "instance_types": {"r5.2xlarge": 0.504},
                                "pool_rates": {"heavy_etl": {"instance_type": "r5.2xlarge"}},
                            }
                        }
                    ).cost
                }
            )
            clear_cache()
            assert resolve_or_warn(denied, lambda: enforcing.client("ec2", **creds)) is denied
    everything = [r.getMessage() for r in caplog.records]
    lines = [
        r.getMessage() for r in caplog.records if r.name.startswith("impactwatch.collector.cost")
    ]
    assert len(lines) == 3, lines  # one per failure
    assert "cost reconcile failed (access_denied)" in lines[0]
    assert "AccessDenied: User: arn:aws:iam::123456789012:user/reader is not authorized" in lines[0]
    assert "ec2:DescribeInstanceTypes" in lines[2] and "cost.rates" in lines[2]
    for secret in (key["AccessKeyId"], key["SecretAccessKey"], ACCESS_KEY, SECRET_KEY):
        assert all(secret not in line for line in everything)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ReconcileCollector(job))
    errors = "impactwatch_cost_reconcile_errors_total"
    assert sample(registry, errors, reason="access_denied") == 2
    assert sample(registry, "impactwatch_cost_reconcile_last_success_timestamp_seconds") is None
    assert (
        sample(registry, "impactwatch_cost_model_ratio", dag_id="risk_scoring", team="risk") is None
    )


class Throttling(BaseHTTPRequestHandler):
    """Answers every call as Cost Explorer does when throttled (JSON protocol, HTTP 400)."""

    hits = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).hits += 1
        body = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"}).encode()
        self.send_response(400)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_throttling_is_retried_then_counted_and_the_last_figures_stay(
    aws: MotoServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = state_db(tmp_path, TODAY - timedelta(1))
    two_pages(aws, TODAY - timedelta(1))
    target = {"url": aws.url}
    retries = Config(retries={"max_attempts": 2, "mode": "standard"})  # retries after the first
    job = ReconcileJob(
        catalog(),
        store.engine,
        ce_client=lambda: aws.client("ce", endpoint_url=target["url"], config=retries),
        clock=lambda: NOW,
    )
    assert job.run_once() is not None  # a good reconciliation first
    server = ThreadingHTTPServer(("127.0.0.1", 0), Throttling)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        job._client = None  # next attempt through the throttling endpoint
        target["url"] = f"http://127.0.0.1:{server.server_port}"
        with caplog.at_level(logging.WARNING):
            assert job.run_once() is None
    finally:
        server.shutdown()
        server.server_close()
    assert Throttling.hits == 3  # the call and boto3's 2 standard retries, then one failure
    (line,) = [
        r.getMessage() for r in caplog.records if r.name.startswith("impactwatch.collector.cost")
    ]
    assert (
        "cost reconcile failed (throttled)" in line and "ThrottlingException: Rate exceeded" in line
    )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ReconcileCollector(job))
    assert sample(registry, "impactwatch_cost_reconcile_errors_total", reason="throttled") == 1
    kept = sample(
        registry, "impactwatch_cost_model_ratio", dag_id="nightly_heavy_etl", team="platform"
    )
    assert kept == pytest.approx(2.3)  # the last good figures are still served


# -- EC2 instance types ---------------------------------------------------------------------------
def test_instance_types_are_read_from_ec2_once(aws: MotoServer) -> None:
    priced = Catalog.model_validate(
        {
            "cost": {
                "rates": {"cpu_hour": "0.04", "memory_gb_hour": "0.005"},
                "instance_types": {"r5.2xlarge": "0.504", "m5.xlarge": "0.192", "m5.huge": "1"},
                "pool_rates": {
                    "etl": {"instance_type": "r5.2xlarge"},
                    "web": {"instance_type": "m5.xlarge"},
                    "typo": {"instance_type": "m5.huge"},
                },
            }
        }
    )
    asked: list[str] = []

    def ec2() -> object:
        asked.append("ec2")
        return aws.client("ec2")

    resolved, unknown = resolve_instance_types(priced, ec2)
    types = resolved.cost.instance_types
    assert (types["r5.2xlarge"].vcpus, types["r5.2xlarge"].memory_gb) == (8, 64)
    assert (types["m5.xlarge"].vcpus, types["m5.xlarge"].memory_gb) == (4, 16)
    assert unknown == ["m5.huge"] and not types["m5.huge"].resolved
    pricing = Pricing(resolved)
    rates = pricing.rates(None, "etl")
    whole = 8 * rates.cpu_hour + 64 * rates.memory_gb_hour
    assert abs(whole - Decimal("0.504")) < Decimal("1e-20")  # the whole instance: its price
    assert pricing.rates(None, "typo") == resolved.cost.rates
    again, _ = resolve_instance_types(priced, ec2)
    assert again == resolved and asked == ["ec2"]  # cached: EC2 asked once


# -- the commands ---------------------------------------------------------------------------------
def test_cost_commands_against_aws(aws: MotoServer, tmp_path: Path) -> None:
    (tmp_path / "catalog.yaml").write_text(
        CATALOG_YAML.replace(
            "cost:\n",
            "cost:\n  instance_types: {r5.2xlarge: 0.504}\n"
            "  pool_rates: {heavy_etl: {instance_type: r5.2xlarge}}\n",
        )
    )
    yesterday = datetime.now(UTC).date() - timedelta(1)
    state_db(tmp_path, yesterday).engine.dispose()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        **aws_env(aws.url),
    }
    common = ["--catalog", str(tmp_path / "catalog.yaml")]
    rates = subprocess.run(
        [sys.executable, "-m", "impactwatch.cli", "cost", "rates", *common],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert rates.returncode == 0, rates.stderr
    assert "r5.2xlarge: 0.504/h, 8 vCPU, 64 GiB, split as cost.rates" in rates.stdout  # from EC2

    two_pages(aws, yesterday)
    state = ["--state-db", f"sqlite:///{tmp_path / 'state.db'}"]
    once = subprocess.run(
        [sys.executable, "-m", "impactwatch.cli", "cost", "reconcile", *common, *state, "--once"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert once.returncode == 0, once.stderr
    assert f"AWS bill vs estimate, UTC {yesterday}" in once.stdout
    heavy = next(line for line in once.stdout.splitlines() if line.startswith("nightly_heavy_etl"))
    assert heavy.split()[1] == "2.30" and heavy.split()[3].endswith("x")

    port = free_port()
    served = subprocess.Popen(
        [sys.executable, "-m", "impactwatch.cli", "cost", "reconcile", *common, *state,
         "--listen", f"127.0.0.1:{port}", "--interval", "1h"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        text, deadline = "", time.monotonic() + 30
        while "impactwatch_cost_model_ratio{" not in text and time.monotonic() < deadline:
            time.sleep(0.2)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                    text = r.read().decode()
            except OSError:
                continue
        assert (
            'impactwatch_cost_actual_daily_dollars{dag_id="nightly_heavy_etl",team="platform"} 2.3'
            in text
        )
    finally:
        served.send_signal(signal.SIGTERM)
        _, err = served.communicate(timeout=30)
    assert served.returncode == 0, err
    assert SECRET_KEY not in err and ACCESS_KEY not in err


def test_cost_commands_refuse_bad_input_with_a_clear_line(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "impactwatch.cli", "cost", *args],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    missing = run("reconcile", "--once")
    assert (
        missing.returncode == 2
        and "--catalog (or IMPACTWATCH_CATALOG) is required" in missing.stderr
    )
    (tmp_path / "c.yaml").write_text(CATALOG_YAML)
    bad = run("reconcile", "--catalog", str(tmp_path / "c.yaml"), "--interval", "soon")
    assert bad.returncode == 2 and "--interval" in bad.stderr and "Traceback" not in bad.stderr
