"""moto in server mode on a free loopback port, in its own process, reached with real boto3.

Fake credentials only: tests never read the caller's AWS settings.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

ACCESS_KEY = "AKIAIMPACTWATCHTEST1"
SECRET_KEY = "impactwatch/test/secret/key/not/a/real/one0"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class MotoServer:
    url: str

    def client(self, service: str, **overrides: Any) -> Any:
        import boto3
        from botocore.config import Config

        kwargs: dict[str, Any] = {
            "endpoint_url": self.url,
            "region_name": "us-east-1",
            "aws_access_key_id": ACCESS_KEY,
            "aws_secret_access_key": SECRET_KEY,
            "config": Config(retries={"max_attempts": 1}),
        }
        kwargs.update(overrides)
        return boto3.client(service, **kwargs)

    def set_cost_and_usage(self, *results: dict[str, Any]) -> None:
        """Queue Cost Explorer answers: each new distinct request takes the next one."""
        body = json.dumps({"results": list(results)}).encode()
        request = urllib.request.Request(
            f"{self.url}/moto-api/static/ce/cost-and-usage-results",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 201

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.url}/moto-api/reset", data=b"", method="POST")
        urllib.request.urlopen(request, timeout=10).close()


def aws_env(url: str) -> dict[str, str]:
    """What points a boto3 process at this server (and nowhere else)."""
    return {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": url,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }


@contextmanager
def moto_server(**env: str) -> Iterator[MotoServer]:
    """`python -m moto.server` on a free loopback port; `env` e.g. INITIAL_NO_AUTH_ACTION_COUNT."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto server did not start on {url}") from None
                time.sleep(0.1)
        yield MotoServer(url)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
