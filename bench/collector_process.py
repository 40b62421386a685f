"""A collector started with the real CLI (`impactwatch collector`) in its own process, reached
over HTTP only, so that one benchmark measures today's tree and an earlier commit alike (see
`bench_router_common.checkout`). Also the process figures the benchmarks read from outside:
RSS and CPU seconds from /proc. (A helper module; run the bench_*.py files.)"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from bench_router_common import ROOT, _free_port, stop_process

TOKEN = "bench-intake-token"  # the intake is closed without one


def code_env(code: Path | None) -> dict[str, str]:
    """The environment that makes a child import `impactwatch` from `code` (a `checkout`), or
    from this working tree; PYTHONPATH comes before the venv's editable install."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(code if code is not None else ROOT)
    return env


class CollectorProcess:
    """`impactwatch collector` on a free loopback port, intake token `TOKEN`."""

    def __init__(
        self,
        airflow_db: str,
        state_db: str,
        *,
        code: Path | None = None,
        catalog: Path | None = None,
        backfill_days: float | None = None,
        extra: list[str] | None = None,
        ready_timeout: float = 60.0,
    ) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="iw-bench-collector-"))
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**code_env(code), "IMPACTWATCH_TOKEN": TOKEN}
        argv = [
            sys.executable, "-m", "impactwatch.cli", "collector",
            "--airflow-db", airflow_db,
            "--state-db", state_db,
            "--listen", f"127.0.0.1:{self.port}",
        ]  # fmt: skip
        if catalog is not None:
            argv += ["--catalog", str(catalog)]
        if backfill_days is not None:
            argv += ["--backfill-days", str(backfill_days)]
        argv += extra or []
        self.log = self.dir / "collector.log"
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            argv, env=env, cwd=self.dir, stdout=self.log.open("w"), stderr=subprocess.STDOUT
        )
        self.pid = self.proc.pid
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(self.log.read_text()[-3000:])
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1):
                    return
            except urllib.error.HTTPError:
                return  # listening; 503 = stale (e.g. an Airflow DB without tables)
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise TimeoutError("collector did not answer /healthz")

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[bytes, float]:
        """GET `path`: (body, seconds at the client)."""
        request = urllib.request.Request(f"{self.url}{path}", headers=headers or {})
        began = time.perf_counter()
        with urllib.request.urlopen(request, timeout=120) as resp:
            body = resp.read()
        return body, time.perf_counter() - began

    def stop(self) -> None:
        stop_process(self.proc, self.dir)


def rss_mb(pid: int) -> float:
    """VmRSS of a process in MB (from /proc/<pid>/status); nan once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, all its threads (from /proc/<pid>/stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
