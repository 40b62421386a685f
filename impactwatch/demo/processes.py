"""The demo's child processes: each in its own process group, logged to a file, stopped for sure.

Everything the demo starts goes through :class:`Processes`: `stop()` sends SIGTERM to every
group, waits, then SIGKILLs what is left, so Ctrl-C leaves no process behind (an Airflow task
runner forks task processes; killing the group takes them too).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path


class StartError(RuntimeError):
    """A child did not come up; the message names it and ends with its log's tail."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.proc.poll() is None


@dataclass
class Processes:
    """Started children, newest last; `stop()` ends them in reverse order."""

    logs: Path
    children: list[Child] = field(default_factory=list)

    def start(
        self,
        name: str,
        argv: list[str],
        *,
        env: dict[str, str] | None = None,
        base_env: dict[str, str] | None = None,
        cwd: Path | None = None,
        ready_url: str | None = None,
        timeout: float = 60,
        console: bool = False,
    ) -> Child:
        """Start `argv` in a new session; with `ready_url`, wait until it answers 2xx.

        The environment is `base_env` (default: ours) plus `env`. Output goes to
        `<logs>/<name>.log`, or stays on the terminal with `console`.
        """
        self.logs.mkdir(parents=True, exist_ok=True)
        log = self.logs / f"{name}.log"
        out = None if console else log.open("wb")
        try:
            proc = subprocess.Popen(
                argv,
                env={**(os.environ if base_env is None else base_env), **(env or {})},
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out if out is not None else log.open("wb"),
                start_new_session=True,  # its own group: Ctrl-C reaches only us, we stop it
            )
        except OSError as exc:
            raise StartError(f"cannot start {name} ({argv[0]}): {exc.strerror or exc}") from None
        child = Child(name, proc, log)
        self.children.append(child)
        if ready_url is not None:
            self.wait_ready(child, ready_url, timeout)
        return child

    @staticmethod
    def wait_ready(child: Child, url: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not child.alive():
                raise StartError(
                    f"{child.name} exited with {child.proc.returncode}; its log "
                    f"({child.log}) ends with:\n{_tail(child.log)}"
                )
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if 200 <= resp.status < 300:
                        return
            except OSError:
                pass
            time.sleep(0.25)
        raise StartError(
            f"{child.name} did not answer {url} within {timeout:.0f}s; its log ({child.log}) "
            f"ends with:\n{_tail(child.log)}"
        )

    def dead(self) -> list[Child]:
        return [c for c in self.children if not c.alive()]

    def stop(self, grace: float = 10) -> None:
        """SIGTERM every group (newest first), wait up to `grace`, SIGKILL the rest."""
        for child in reversed(self.children):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for child in reversed(self.children):
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.proc.wait(max(deadline - time.monotonic(), 0.1))
        for child in self.children:
            # the leader may be gone while a forked grandchild still holds the group
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.proc.wait(5)
        self.children.clear()
