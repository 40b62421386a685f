"""The demo's stack on loopback: Airflow home, collector, router, Prometheus, Alertmanager.

Every part is the real program, started as the README tells an operator to start it, on free
ports, with its configuration generated from the demo catalog into `<workdir>`. The rules are
generated with demo timings (5 s scrapes and evaluations, 10 s `for:`, 10 s group interval) so
that what takes minutes in production takes seconds here.
"""

from __future__ import annotations

import secrets
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from impactwatch.demo.processes import Processes, StartError, free_port
from impactwatch.demo.scenario import demo_catalog
from impactwatch.devtools.airflow_home import REPO_ROOT, AirflowHome

EXAMPLE_CATALOG = REPO_ROOT / "examples" / "catalog.yaml"

# The rule settings of the demo (see `impactwatch rules --list-settings` for what each means).
DEMO_RULE_SETTINGS = {
    "scrape_interval": "5s",
    "evaluation_interval": "5s",
    "freshness_for": "10s",
    "pipeline_for": "5s",
    "group_wait": "5s",
    "group_interval": "10s",
    "series_gap_tolerance": "120s",
}


def _binary(*names: str) -> str:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    raise StartError(f"{names[0]} is not installed: `make demo` apt-installs it")


def _impactwatch() -> list[str]:
    """This environment's `impactwatch` command (the venv's console script)."""
    script = Path(sys.executable).parent / "impactwatch"
    return [str(script)] if script.exists() else [sys.executable, "-m", "impactwatch.cli"]


@dataclass
class Ports:
    collector: int = field(default_factory=free_port)
    router: int = field(default_factory=free_port)
    prometheus: int = field(default_factory=free_port)
    alertmanager: int = field(default_factory=free_port)
    airflow: int = field(default_factory=free_port)


@dataclass
class Stack:
    work: Path
    processes: Processes
    ports: Ports = field(default_factory=Ports)
    airflow_ui: bool = True
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    webhook_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))

    @property
    def catalog_path(self) -> Path:
        return self.work / "catalog.yaml"

    @property
    def messages_path(self) -> Path:
        return self.work / "slack-messages.jsonl"

    def url(self, part: str) -> str:
        return f"http://127.0.0.1:{getattr(self.ports, part)}"

    # --- configuration ----------------------------------------------------------------------
    def write_catalog(self) -> None:
        example = yaml.safe_load(EXAMPLE_CATALOG.read_text())
        header = (
            "# The demo catalog: examples/catalog.yaml with the story's limits in seconds\n"
            "# (written by `impactwatch demo`; see impactwatch/demo/scenario.py).\n"
        )
        text = yaml.safe_dump(demo_catalog(example), sort_keys=False, allow_unicode=True)
        self.catalog_path.write_text(header + text)

    def write_rules(self) -> Path:
        """Rules, prometheus.yml and alertmanager.yml for the demo's ports."""
        from impactwatch.alert_rules.generate import generate
        from impactwatch.alert_rules.settings import settings_from_pairs
        from impactwatch.alert_rules.writer import write_tree
        from impactwatch.catalog.loader import load_catalog

        token_file = self.work / "secrets" / "webhook-token"
        token_file.parent.mkdir(mode=0o700, exist_ok=True)
        token_file.write_text(self.webhook_token)
        token_file.chmod(0o600)
        out = self.work / "prometheus"
        settings = settings_from_pairs(
            [f"{k}={v}" for k, v in DEMO_RULE_SETTINGS.items()],
            router_url=f"{self.url('router')}/alertmanager",
            router_token_file=str(token_file),
            runbook_base_url=f"{self.url('router')}/runbooks",  # the router serves them
            collector_targets=[f"127.0.0.1:{self.ports.collector}"],
            router_targets=[f"127.0.0.1:{self.ports.router}"],
            alertmanager_targets=[f"127.0.0.1:{self.ports.alertmanager}"],
        )
        write_tree(out, generate(load_catalog(self.catalog_path), settings))
        return out

    def airflow_home(self) -> AirflowHome:
        db = self.work / "airflow" / "airflow.db"
        env = {
            # the plugin inside Airflow's task processes sends to the demo's collector
            "IMPACTWATCH_COLLECTOR_URL": self.url("collector"),
            "IMPACTWATCH_TOKEN": self.token,
            # the UI is on loopback for one person: no login
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__API__BASE_URL": self.url("airflow"),
        }
        return AirflowHome(home=self.work / "airflow", db_url=f"sqlite:///{db}", extra_env=env)

    # --- processes --------------------------------------------------------------------------
    def start_collector(self, airflow_db: str) -> None:
        argv = [
            *_impactwatch(),
            "collector",
            "--catalog",
            str(self.catalog_path),
            "--airflow-db",
            airflow_db,
            "--state-db",
            f"sqlite:///{self.work / 'collector-state.db'}",
            "--listen",
            f"127.0.0.1:{self.ports.collector}",
            "--poll-interval",
            "2",
            "--backfill-days",
            "1",
        ]
        env = {"IMPACTWATCH_TOKEN": self.token}
        self.processes.start(
            "collector", argv, env=env, ready_url=f"{self.url('collector')}/metrics"
        )

    def start_router(self) -> None:
        argv = [
            *_impactwatch(),
            "router",
            "--catalog",
            str(self.catalog_path),
            "--state-db",
            f"sqlite:///{self.work / 'router-state.db'}",
            "--listen",
            f"127.0.0.1:{self.ports.router}",
        ]
        env = {
            "IMPACTWATCH_WEBHOOK_TOKEN": self.webhook_token,
            "IMPACTWATCH_ROUTER_JSONL_PATH": str(self.messages_path),
            # no Slack token: messages go to the console (the router's log) and the JSONL file
            "IMPACTWATCH_ROUTER_SETTLE_SECONDS": "2",
            "IMPACTWATCH_ROUTER_RUNBOOKS_DIR": str(self.work / "prometheus" / "runbooks"),
        }
        if self.airflow_ui:
            env["IMPACTWATCH_ROUTER_AIRFLOW_URL"] = self.url("airflow")
        self.processes.start("router", argv, env=env, ready_url=f"{self.url('router')}/healthz")

    def start_prometheus(self, config_dir: Path) -> None:
        argv = [
            _binary("prometheus"),
            f"--config.file={config_dir / 'prometheus.yml'}",
            f"--storage.tsdb.path={self.work / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{self.ports.prometheus}",
            # The alerts' "Alert source" links (generatorURL) are built on this: without it,
            # Prometheus uses the machine's hostname, which a browser here may not resolve.
            f"--web.external-url={self.url('prometheus')}",
            "--storage.tsdb.retention.time=1d",
        ]
        self.processes.start(
            "prometheus", argv, cwd=config_dir, ready_url=f"{self.url('prometheus')}/-/ready"
        )

    def start_alertmanager(self, config_dir: Path) -> None:
        argv = [
            _binary("prometheus-alertmanager", "alertmanager"),
            f"--config.file={config_dir / 'alertmanager.yml'}",
            f"--storage.path={self.work / 'alertmanager-data'}",
            f"--web.listen-address=127.0.0.1:{self.ports.alertmanager}",
            f"--web.external-url={self.url('alertmanager')}",
            "--cluster.listen-address=",  # one instance: no gossip port
        ]
        self.processes.start("alertmanager", argv, ready_url=f"{self.url('alertmanager')}/-/ready")

    def start_airflow_ui(self, home: AirflowHome) -> None:
        argv = [
            str(home.airflow_bin),
            "api-server",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.ports.airflow),
            "--workers",
            "1",
        ]
        self.processes.start(
            "airflow-api-server",
            argv,
            base_env=home.env(),
            cwd=home.home,
            ready_url=f"{self.url('airflow')}/api/v2/monitor/health",
            timeout=120,
        )
