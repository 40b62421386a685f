"""A PostgreSQL server for tests, without assuming one.

:func:`postgres_server` answers the base URL of the server at 127.0.0.1:5432 when one answers
there (or of $IMPACTWATCH_TEST_POSTGRES_URL), else of a throwaway cluster made with Debian's
``initdb`` in a temporary folder, on a free port, stopped and deleted when the process exits.
Tests make their own databases with :func:`create_database` and drop them after.
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432"
URL_ENV = "IMPACTWATCH_TEST_POSTGRES_URL"

_throwaway: ThrowawayCluster | None = None


def answers(base_url: str, timeout: float = 2) -> bool:
    """Whether a PostgreSQL server accepts a connection at `base_url` (its `postgres` DB)."""
    try:
        with psycopg.connect(f"{base_url}/postgres", connect_timeout=timeout):
            return True
    except psycopg.Error:
        return False


def postgres_server() -> str:
    """Base URL (no database) of a PostgreSQL server with trust auth for user `postgres`."""
    global _throwaway
    configured = os.environ.get(URL_ENV)
    if configured:
        if not answers(configured):
            raise RuntimeError(f"${URL_ENV}={configured} does not answer; start it or unset it")
        return configured.rstrip("/")
    if answers(DEFAULT_URL):
        return DEFAULT_URL
    if _throwaway is None:
        _throwaway = ThrowawayCluster.start()
        atexit.register(_throwaway.stop)
    return _throwaway.url


def create_database(base_url: str, name: str) -> str:
    """Create database `name` (dropping a leftover of that name); return its URL."""
    drop_database(base_url, name)
    with _admin(base_url) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return f"{base_url}/{name}"


def drop_database(base_url: str, name: str) -> None:
    """Drop database `name` if it exists, ending its sessions first."""
    with _admin(base_url) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


def _admin(base_url: str) -> psycopg.Connection:
    return psycopg.connect(f"{base_url}/postgres", autocommit=True, connect_timeout=5)


@dataclass
class ThrowawayCluster:
    """A PostgreSQL cluster in a temporary folder, listening on 127.0.0.1 and a socket in it."""

    root: Path
    port: int
    bin_dir: Path
    run_as: str | None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}"

    @classmethod
    def start(cls) -> ThrowawayCluster:
        bin_dir = _postgres_bin_dir()
        root = Path(tempfile.mkdtemp(prefix="impactwatch-pg-"))
        # initdb refuses to run as root: run the server as the Debian package's `postgres` user.
        run_as = "postgres" if os.geteuid() == 0 else None
        if run_as:
            user = pwd.getpwnam(run_as)
            os.chown(root, user.pw_uid, user.pw_gid)
        cluster = cls(root=root, port=_free_port(), bin_dir=bin_dir, run_as=run_as)
        try:
            cluster._pg(
                "initdb", "-D", str(root / "data"), "-U", "postgres", "-A", "trust",
                "-E", "UTF8", "--no-sync",
            )  # fmt: skip
            options = (
                f"-p {cluster.port} -k {root} -c listen_addresses=127.0.0.1"
                " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            )
            cluster._pg(
                "pg_ctl", "start", "-w", "-t", "60", "-D", str(root / "data"),
                "-l", str(root / "server.log"), "-o", options,
            )  # fmt: skip
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def stop(self) -> None:
        """Stop the server (fast) and delete its folder; safe to call twice."""
        if (self.root / "data" / "postmaster.pid").exists():
            self._pg("pg_ctl", "stop", "-m", "immediate", "-w", "-D", str(self.root / "data"))
        shutil.rmtree(self.root, ignore_errors=True)

    def _pg(self, program: str, *args: str) -> None:
        argv = [str(self.bin_dir / program), *args]
        if self.run_as:
            argv = ["runuser", "-u", self.run_as, "--", *argv]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        if proc.returncode != 0:
            log = self.root / "server.log"
            server_log = log.read_text(errors="replace") if log.exists() else ""
            raise RuntimeError(
                f"`{' '.join(argv)}` exited with {proc.returncode}:\n"
                f"{proc.stderr or proc.stdout}\n{server_log[-2000:]}"
            )


def _postgres_bin_dir() -> Path:
    """Newest Debian PostgreSQL binaries (/usr/lib/postgresql/<major>/bin)."""
    found = sorted(
        (Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")),
        key=lambda d: int(d.parent.name) if d.parent.name.isdigit() else 0,
    )
    if found:
        return found[-1]
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise RuntimeError(
        "No PostgreSQL answers at 127.0.0.1:5432 and no initdb was found to start one: "
        "install the `postgresql` package or set $IMPACTWATCH_TEST_POSTGRES_URL."
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
