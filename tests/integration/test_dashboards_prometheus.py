"""Every panel of every generated dashboard, proven against a real Prometheus.

The Prometheus (Debian's) scrapes a real collector on a private copy of the populated Airflow
DB and a real router, and evaluates the real generated alert rules. The test plays Airflow's
scheduler on that copy (SQL: aged updates, queue times, a heartbeat, a broken DAG file, a run
in flight, a new scheduled run), posts listener events to the collector's intake and
Alertmanager notifications to the router (whose Slack is a stand-in that refuses everything).
Then each query must parse, and each panel must find data: a panel that can never show data
fails here.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import signal
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from http.server import ThreadingHTTPServer
from typing import Any

import pytest

from impactwatch.alert_rules.generate import generate as generate_rules
from impactwatch.alert_rules.settings import RuleSettings
from impactwatch.catalog.loader import load_catalog
from impactwatch.dashboards.generate import models
from impactwatch.dashboards.promql import proof_part
from impactwatch.router.http_app import create_app as create_router_app
from impactwatch.router.service import RouterService
from impactwatch.router.settings import RouterSettings
from impactwatch.serving import Server, ServerLimits
from tests.integration.helpers import EXAMPLE_CATALOG, catch_up, make_service, serving
from tests.integration.test_dashboards_scenario import (
    SlackRefuses,
    age_the_morning,
    long_morning_run,
    notification,
    post,
    private_copy,
    schedule_more,
)
from tests.support.prometheus import Prometheus

pytestmark = pytest.mark.integration
LOOPBACK = "127.0.0.1"

CATALOG = load_catalog(EXAMPLE_CATALOG)
DASHBOARDS = models(CATALOG)
PANELS = [
    pytest.param(panel, id=f"{kind}: {panel['title']}")
    for kind, board in DASHBOARDS.items()
    for panel in board["panels"]
    if panel["type"] != "row"
]
VARIABLES = [
    pytest.param(v, id=f"{kind}: ${v['name']}")
    for kind, board in DASHBOARDS.items()
    for v in board["templating"]["list"]
]
# What Grafana puts in place of its variables: the range it would use for "last hour", the rate
# interval for a 15 s scrape interval, and "All" for every dashboard variable. The step is 1 s,
# not Grafana's 1 m: this Prometheus is seconds old, and a subquery whose steps all fall before
# the first sample would find nothing however right the query is.
BUILT_IN = {"__range_s": "3600", "__range": "1h", "__rate_interval": "1m", "__interval": "1s"}

INTAKE_TOKEN = "dashboards-intake-token"
WEBHOOK_TOKEN = "dashboards-webhook-token"


NAMES = {v["name"] for board in DASHBOARDS.values() for v in board["templating"]["list"]}


def substitute(expr: str) -> str:
    """As Grafana does: its variables replaced, anything else with a `$` (`$1`) left alone."""

    def value(found: re.Match[str]) -> str:
        name = found[1]
        return BUILT_IN.get(name) or (".*" if name in NAMES else found[0])

    return re.sub(r"\$(\w+)", value, expr)


# -- Prometheus -----------------------------------------------------------------------------------
def ask(prom: Prometheus, expr: str) -> dict[str, Any]:
    """The raw API answer (including `bad_data` errors, which urllib raises as HTTP 400)."""
    url = f"{prom.url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
    try:
        with urllib.request.urlopen(url, timeout=20) as resp:
            return json.load(resp)
    except urllib.error.HTTPError as err:
        return json.load(err)


def load_rules(prom: Prometheus) -> None:
    """The generated rules, with `for:` zeroed so the scenario's alerts fire within seconds."""
    zero = {f: 0 for f in ("freshness_for", "pipeline_for", "platform_for", "import_errors_for")}
    settings = RuleSettings(evaluation_interval=1, noisy_for=0, collector_down_for=0, **zero)
    for rel, text in generate_rules(CATALOG, settings).items():
        if rel.startswith("rules/"):
            (prom.dir / rel).parent.mkdir(parents=True, exist_ok=True)
            (prom.dir / rel).write_text(text)
    config = json.loads((prom.dir / "prometheus.yml").read_text())
    config["rule_files"] = [str(prom.dir / "rules" / "*.rules.yml")]
    (prom.dir / "prometheus.yml").write_text(json.dumps(config))
    prom.proc.send_signal(signal.SIGHUP)
    wait_for(prom, [], lambda: _rules_loaded(prom))


def _rules_loaded(prom: Prometheus) -> bool:
    with urllib.request.urlopen(f"{prom.url}/api/v1/rules", timeout=10) as resp:
        return len(json.load(resp)["data"]["groups"]) == 4  # freshness, pipelines, platform, cost


def wait_for(
    prom: Prometheus,
    exprs: list[str],
    also: Callable[[], bool] = lambda: True,
    timeout: float = 30,
) -> None:
    """Until every query in `exprs` finds data and `also()` holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(ask(prom, e)["data"]["result"] for e in exprs) and also():
            return
        time.sleep(0.3)
    missing = [e for e in exprs if not ask(prom, e)["data"]["result"]]
    raise AssertionError(f"scenario not visible in Prometheus after {timeout}s: {missing}")


@pytest.fixture(scope="module")
def scenario(
    airflow_sqlite_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Prometheus]:
    work = tmp_path_factory.mktemp("dashboards")
    with ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, work, ignore_errors=True)
        airflow = private_copy(airflow_sqlite_url, work / "airflow.db")
        cleanup.callback(airflow.close)
        now = time.time()
        with airflow:
            age_the_morning(airflow, now)
        collector = make_service(f"sqlite:///{work / 'airflow.db'}", work)
        cleanup.callback(collector.close)
        slack = _serve(cleanup, ThreadingHTTPServer((LOOPBACK, 0), SlackRefuses), start=True)
        offset = [0.0]
        router = RouterService(
            RouterSettings(
                state_db=f"sqlite:///{work / 'router.db'}",
                slack_bot_token="xoxb-dashboards-test",
                slack_api_url=f"http://127.0.0.1:{slack.server_port}/api/",
                settle_seconds=0,
                tick_seconds=3600,
                delivery_workers=1,
                channel_interval=0,
            ),
            CATALOG,
            clock=lambda: time.time() + offset[0],
        )
        cleanup.callback(router.close)
        catch_up(collector)
        advice = _advice_exporter(cleanup, work)
        c_base = cleanup.enter_context(serving(collector, INTAKE_TOKEN))
        r_app = create_router_app(router, WEBHOOK_TOKEN)
        r_server = Server(r_app, LOOPBACK, 0, ServerLimits(), name="router")
        r_server.start()
        cleanup.callback(r_server.stop)
        router.start()
        intake = f"{c_base}/v1/events"
        webhook = f"http://127.0.0.1:{r_server.port}/alertmanager"
        assert (
            post(intake, b'{"schema": "impactwatch.events/v1", "events": [{}]}', INTAKE_TOKEN)
            == 400
        )
        assert post(intake, long_morning_run("scheduled__listener_a", now), INTAKE_TOKEN) == 202
        stale = notification(
            "DataProductStale", team="markets", severity="critical", dataset="market_data"
        )
        assert post(webhook, stale, WEBHOOK_TOKEN) == 200
        offset[0] = 16 * 60  # nobody acknowledged: the first escalation step is due
        router.tick()
        prom = Prometheus([c_base.removeprefix("http://"), f"127.0.0.1:{r_server.port}", advice])
        cleanup.callback(prom.stop)
        load_rules(prom)
        wait_for(prom, ["impactwatch_router_escalations_total", "impactwatch_pool_slots"])
        time.sleep(2)  # a baseline of scrapes before the second act
        now = time.time()
        with airflow:
            schedule_more(airflow, now)
        catch_up(collector)
        assert post(intake, b"not json", INTAKE_TOKEN) == 400
        assert post(intake, long_morning_run("scheduled__listener_b", now), INTAKE_TOKEN) == 202
        missed = notification(
            "PipelineMissedDeadline",
            team="finance",
            severity="warning",
            dag_id="payments_reconciliation",
        )
        assert post(webhook, missed, WEBHOOK_TOKEN) == 200
        offset[0] = 61 * 60  # still nobody: the second step
        router.tick()
        wait_for(
            prom,
            [
                'ALERTS{alertname="PipelineRunTooLong", alertstate="firing"}',
                'ALERTS{alertname="DataProductStale", alertstate="firing"}',
                "impactwatch_router_escalations_total == 2",
                "increase(impactwatch_task_queued_seconds_count[1m]) > 0",
                'increase(impactwatch_collector_events_total{outcome="invalid"}[1m]) > 0',
                'increase(impactwatch_router_slack_calls_total{outcome="failed"}[1m]) > 0',
            ],
        )
        yield prom


def _advice_exporter(cleanup: ExitStack, work: Any) -> str:
    """`impactwatch pools advise --listen`'s exporter on the collector's state DB: HOST:PORT."""
    from prometheus_client import CollectorRegistry, start_http_server

    from impactwatch.collector.state.schema import make_engine
    from impactwatch.pools.advice import AdviceSettings
    from impactwatch.pools.job import AdviceCollector, AdviceJob
    from impactwatch.pools.usage import HourOfWeek

    engine = make_engine(f"sqlite:///{work / 'state.db'}")
    cleanup.callback(engine.dispose)
    job = AdviceJob(CATALOG, engine, hours=HourOfWeek(), settings=AdviceSettings(), weeks=52)
    advice = job.run_once()
    assert advice is not None and advice.pools, "no pool advice from the collector's history"
    registry = CollectorRegistry(auto_describe=False)
    registry.register(AdviceCollector(job))
    server, _thread = start_http_server(0, addr=LOOPBACK, registry=registry)
    cleanup.callback(server.server_close)
    cleanup.callback(server.shutdown)
    return f"127.0.0.1:{server.server_port}"


def _serve(cleanup: ExitStack, server: Any, *, start: bool = False) -> Any:
    """`server`, serving (started here when `start`), shut down and closed at cleanup."""
    if start:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    cleanup.callback(server.server_close)
    cleanup.callback(server.shutdown)
    return server


# -- the proof ------------------------------------------------------------------------------------
def _finite(result: list[dict[str, Any]]) -> bool:
    return any(math.isfinite(float(r["value"][1])) for r in result)


@pytest.mark.parametrize("panel", PANELS)
def test_panel_queries_parse_and_find_data(scenario: Prometheus, panel: dict[str, Any]) -> None:
    for target in panel["targets"]:
        expr = substitute(target["expr"])
        whole = ask(scenario, expr)
        assert whole["status"] == "success", f"{target['refId']}: {whole.get('error')}"
        shown = ask(scenario, proof_part(expr))["data"]["result"]
        assert _finite(shown), (
            f"query {target['refId']} of panel {panel['title']!r} finds no data "
            f"(no series, or only NaN/Inf):\n{proof_part(expr)}"
        )


@pytest.mark.parametrize("variable", VARIABLES)
def test_variables_resolve(scenario: Prometheus, variable: dict[str, Any]) -> None:
    found = re.fullmatch(r"label_values\((.+), (\w+)\)", variable["query"], re.S)
    assert found, f"unexpected variable query {variable['query']!r}"
    series, label = substitute(found[1]), found[2]
    url = f"{scenario.url}/api/v1/series?{urllib.parse.urlencode({'match[]': series})}"
    with urllib.request.urlopen(url, timeout=10) as resp:
        values = {s.get(label) for s in json.load(resp)["data"]} - {None, ""}
    assert values, f"${variable['name']} has no values: {variable['query']}"


def _by(scenario: Prometheus, kind: str, title: str, ref: str, label: str) -> dict[str, float]:
    panels = DASHBOARDS[kind]["panels"]
    panel = next(p for p in panels if p["title"] == title and p["type"] != "row")
    target = next(t for t in panel["targets"] if t["refId"] == ref)
    result = ask(scenario, substitute(target["expr"]))["data"]["result"]
    return {r["metric"].get(label, ""): float(r["value"][1]) for r in result}


def test_the_panels_tell_the_scenario(scenario: Prometheus) -> None:
    """What the pages say about the morning the scenario played."""
    products = "Data products"
    status = _by(scenario, "data-products", products, "A", "title")
    assert status["Market prices"] == 2  # 5 h old, limit 2 h, critical: stale
    assert status["FX rates"] == 1  # 3 h old, limit 2 h: late
    assert status["Reconciled payments"] == 1  # 50 h old, limit 26 h: late
    assert status["Customer risk scores"] == 0  # fresh
    incidents = _by(scenario, "data-products", products, "F", "dataset")
    assert incidents["market_data"] == 1  # its own freshness alert
    assert incidents["fx_rates"] == 2  # freshness, and its pipeline's last run failed
    assert incidents["payments_reconciled"] == 2  # freshness, and its deadline was missed
    assert incidents["customer_risk_scores"] == 0  # the zero fill
    pipelines = _by(scenario, "data-products", products, "A", "dag_id")
    assert set(pipelines) >= {"market_data_ingest", "nightly_heavy_etl", ""}
    cost = _by(scenario, "data-products", products, "G", "dataset")
    assert cost["ledger_balances"] == cost["transactions_warehouse"] > 0  # one pipeline, shared
    on_time = _by(scenario, "data-products", products, "E", "dataset")
    assert on_time["daily_kpi_report"] < 1  # a 74-minute morning run (limit 30 m)

    runs = "Pipelines"
    assert _by(scenario, "team", runs, "A", "dag_id")["market_data_ingest"] == 1  # failed
    assert _by(scenario, "team", runs, "I", "dag_id")["payments_reconciliation"] == 1  # missed
    assert 1400 < _by(scenario, "team", runs, "C", "dag_id")["risk_scoring"] < 1700

    assert _by(scenario, "platform", "DAG files failing to parse", "A", "")[""] == 1
    assert _by(scenario, "platform", "Scheduler heartbeat age", "A", "")[""] < 60
    assert _by(scenario, "platform", "Escalations", "A", "team")["markets"] >= 1
    assert _by(scenario, "platform", "Slack delivery failures", "A", "")[""] >= 1
