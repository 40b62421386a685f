"""What the router benchmarks share: a router process started with the real CLI, its /metrics,
webhook posts timed at the client. (A helper module; run bench_router_burst/_storm.)"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.tcpproxy import _free_port  # noqa: E402

TOKEN = "bench-webhook-token"


def checkout(ref: str) -> Path:
    """The `impactwatch` package and the example catalog as of git `ref`, unpacked in a
    temporary folder (read-only use of git: `git archive`), for a before/after run (a catalog
    of a later version may use keys that version refuses). The caller deletes the folder."""
    folder = Path(tempfile.mkdtemp(prefix="iw-bench-baseline-"))
    archive = subprocess.run(
        [
            "git",
            "-C",
            str(ROOT),
            "archive",
            "--format=tar",
            ref,
            "impactwatch",
            "examples/catalog.yaml",
        ],
        capture_output=True,
    )
    if archive.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        raise SystemExit(f"--baseline {ref}: {archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder


def stop_process(proc: subprocess.Popen[bytes], folder: Path) -> None:
    """SIGTERM (as an orchestrator would), SIGKILL after 20 s; then the process's folder goes."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    shutil.rmtree(folder, ignore_errors=True)


class RouterProcess:
    """`impactwatch router` in its own process (as deployed), Slack at `slack_url`; with `code`,
    the `impactwatch` package found there instead of the working tree (see `checkout`)."""

    def __init__(
        self,
        catalog: dict[str, Any],
        slack_url: str,
        slack_token: str,
        state_db: str | None = None,
        code: Path | None = None,
        **settings: str,
    ) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="iw-bench-router-"))
        (self.dir / "catalog.yaml").write_text(yaml.safe_dump(catalog, sort_keys=False))
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "SLACK_BOT_TOKEN": slack_token,
            "SLACK_API_URL": slack_url,
            "IMPACTWATCH_WEBHOOK_TOKEN": TOKEN,
            **{f"IMPACTWATCH_ROUTER_{k.upper()}": v for k, v in settings.items()},
        }
        if code is not None:  # PYTHONPATH comes before the editable install
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(code), env.get("PYTHONPATH")]))
        argv = [
            str(Path(sys.executable).with_name("impactwatch")),
            "router",
            "--catalog", str(self.dir / "catalog.yaml"),
            "--state-db", state_db or f"sqlite:///{self.dir / 'router.db'}",
            "--listen", f"127.0.0.1:{self.port}",
        ]  # fmt: skip
        self.log = self.dir / "router.log"
        self.proc = subprocess.Popen(
            argv, env=env, cwd=self.dir, stdout=self.log.open("w"), stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(self.log.read_text()[-3000:])
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise TimeoutError(self.log.read_text()[-3000:])

    def post(self, body: bytes) -> tuple[int, float]:
        """POST one notification; (status, seconds) at the client."""
        request = urllib.request.Request(
            f"{self.url}/alertmanager",
            data=body,
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
            method="POST",
        )
        began = time.perf_counter()
        try:
            with urllib.request.urlopen(request, timeout=30) as resp:
                resp.read()
                status = resp.status
        except urllib.error.HTTPError as err:
            status = err.code
        return status, time.perf_counter() - began

    def metrics(self) -> dict[str, float]:
        """Samples of /metrics as {'name{labels}': value}."""
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=10) as resp:
            text = resp.read().decode()
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def wait_drained(self, timeout: float = 600, quiet: float = 0.0) -> float:
        """Seconds until the outbox is empty (polled every 0.2 s); inf on timeout."""
        began = time.monotonic()
        while time.monotonic() - began < timeout:
            if self.metrics().get("impactwatch_router_outbox_depth", 1) == 0:
                time.sleep(quiet)
                if self.metrics().get("impactwatch_router_outbox_depth", 1) == 0:
                    return time.monotonic() - began - quiet
            time.sleep(0.2)
        return float("inf")

    def stop(self) -> None:
        stop_process(self.proc, self.dir)


def slack_calls(metrics: dict[str, float]) -> dict[tuple[str, str], float]:
    out = {}
    pattern = re.compile(
        r'impactwatch_router_slack_calls_total\{method="([^"]+)",outcome="(\w+)"\}'
    )
    for key, value in metrics.items():
        match = pattern.fullmatch(key)
        if match:
            out[(match[1], match[2])] = value
    return out


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(int(-(-q / 100 * len(ordered) // 1)), 1)
    return ordered[rank - 1]


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()
