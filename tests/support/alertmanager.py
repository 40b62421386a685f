"""A real Alertmanager (Debian's prometheus-alertmanager) on a free loopback port, and a real
Prometheus run on a given config file (the generated prometheus.yml: rules and alerting).

Both are started by the caller and must be stopped with `stop()`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.support.prometheus import Prometheus
from tests.support.tcpproxy import _free_port


def free_port() -> int:
    return _free_port()


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(log.read_text()[-2000:])
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not become ready: {log.read_text()[-2000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class Alertmanager:
    """Alertmanager with `config_file`, clustering off, on `port` (free-picked by default)."""

    def __init__(self, config_file: Path, port: int | None = None) -> None:
        binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
        if binary is None:
            raise RuntimeError("alertmanager is not installed: run `make test` (it apt-installs)")
        self.dir = Path(tempfile.mkdtemp(prefix="iw-am-"))
        self.port = port or _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = self.dir / "alertmanager.log"
        self.proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config_file}",
                f"--storage.path={self.dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=",  # no gossip: a single instance
            ],
            stdout=subprocess.DEVNULL,
            stderr=self.log.open("w"),
        )
        try:
            _wait_ready(self.url, self.proc, self.log)
        except BaseException:
            self.stop()
            raise

    def post_alerts(self, alerts: list[dict[str, Any]]) -> None:
        """What Prometheus does: POST /api/v2/alerts."""
        request = urllib.request.Request(
            f"{self.url}/api/v2/alerts",
            data=json.dumps(alerts).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as resp:
            assert resp.status == 200, resp.status

    def alerts(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.url}/api/v2/alerts", timeout=5) as resp:
            return json.load(resp)

    def stop(self) -> None:
        _stop(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)


class ConfiguredPrometheus(Prometheus):
    """A real Prometheus on a given config file (rule files are found relative to it)."""

    def __init__(self, config_file: Path, port: int | None = None) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            raise RuntimeError("prometheus is not installed: run `make test` (it apt-installs it)")
        self.dir = Path(tempfile.mkdtemp(prefix="iw-prom-"))
        self.port = port or _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config_file}",
                f"--storage.tsdb.path={self.dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=(self.dir / "prometheus.log").open("w"),
        )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def active_alerts(self) -> list[dict[str, Any]]:
        """GET /api/v1/alerts: pending and firing alerts with their activeAt."""
        with urllib.request.urlopen(f"{self.url}/api/v1/alerts", timeout=5) as resp:
            return json.load(resp)["data"]["alerts"]
