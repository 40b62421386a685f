"""The listener's settings, from environment variables only (standard library, no Airflow).

| setting | environment | default |
| --- | --- | --- |
| collector base URL (unset: no listeners) | `IMPACTWATCH_COLLECTOR_URL` | none |
| bearer token | `IMPACTWATCH_TOKEN` or `IMPACTWATCH_TOKEN_FILE` | none |
| longest wait at a task's end (s) | `IMPACTWATCH_LISTENER_FLUSH_TIMEOUT` | 0.03 |
| longest wait when a process stops (s) | `IMPACTWATCH_LISTENER_EXIT_TIMEOUT` | 1.0 |
| one request's time limit (s) | `IMPACTWATCH_LISTENER_TIMEOUT` | 5.0 |
| events per request | `IMPACTWATCH_LISTENER_BATCH` | 500 |
| wait to fill a batch (s) | `IMPACTWATCH_LISTENER_LINGER` | 0.5 |
| events kept while the collector is away | `IMPACTWATCH_LISTENER_QUEUE` | 10000 |
| first back-off after a failure (s), doubling | `IMPACTWATCH_LISTENER_BACKOFF` | 2 |
| longest back-off (s) | `IMPACTWATCH_LISTENER_MAX_BACKOFF` | 300 |
| folder of the back-off file shared by processes | `IMPACTWATCH_LISTENER_STATE_DIR` | system temp |
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

URL_ENV = "IMPACTWATCH_COLLECTOR_URL"
TOKEN_ENV = "IMPACTWATCH_TOKEN"
TOKEN_FILE_ENV = "IMPACTWATCH_TOKEN_FILE"
EVENTS_PATH = "/v1/events"


class ConfigError(ValueError):
    """A setting is unusable; the message names the variable and what to do."""


@dataclass(frozen=True)
class ListenerConfig:
    url: str  # full URL of POST /v1/events
    token: str | None = None
    flush_timeout: float = 0.03
    exit_timeout: float = 1.0
    request_timeout: float = 5.0
    batch_size: int = 500
    linger: float = 0.5
    queue_size: int = 10_000
    backoff: float = 2.0
    max_backoff: float = 300.0
    state_dir: str = ""

    @property
    def backoff_file(self) -> str:
        """One file per user and collector: every process on the host shares the back-off."""
        digest = hashlib.sha256(self.url.encode()).hexdigest()[:12]
        uid = os.getuid() if hasattr(os, "getuid") else 0
        folder = self.state_dir or tempfile.gettempdir()
        return os.path.join(folder, f"impactwatch-listener-{uid}-{digest}.backoff")


def events_url(base: str) -> str:
    """`http://host:9464` -> `http://host:9464/v1/events`; a URL ending in it is kept."""
    parts = urlsplit(base.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"{URL_ENV}={base!r} is not an http(s) URL; set it like http://collector:9464"
        )
    path = parts.path.rstrip("/")
    if not path.endswith(EVENTS_PATH):
        path += EVENTS_PATH
    query = f"?{parts.query}" if parts.query else ""
    return f"{parts.scheme}://{parts.netloc}{path}{query}"


def _number(env: Mapping[str, str], name: str, default: float, low: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if value < low:
        raise ConfigError(f"{name}={raw!r} must be at least {low}")
    return value


def _token(env: Mapping[str, str]) -> str | None:
    token = env.get(TOKEN_ENV, "").strip()
    if token:
        return token
    path = env.get(TOKEN_FILE_ENV, "").strip()
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read().strip() or None
    except OSError as exc:
        raise ConfigError(f"{TOKEN_FILE_ENV}: cannot read {path!r} ({exc.strerror})") from None


def from_env(env: Mapping[str, str] | None = None) -> ListenerConfig | None:
    """The settings, or None when `IMPACTWATCH_COLLECTOR_URL` is unset (listener off)."""
    env = os.environ if env is None else env
    base = env.get(URL_ENV, "").strip()
    if not base:
        return None
    prefix = "IMPACTWATCH_LISTENER_"
    return ListenerConfig(
        url=events_url(base),
        token=_token(env),
        flush_timeout=_number(env, prefix + "FLUSH_TIMEOUT", 0.03, 0.0),
        exit_timeout=_number(env, prefix + "EXIT_TIMEOUT", 1.0, 0.0),
        request_timeout=_number(env, prefix + "TIMEOUT", 5.0, 0.001),
        batch_size=int(_number(env, prefix + "BATCH", 500, 1)),
        linger=_number(env, prefix + "LINGER", 0.5, 0.0),
        queue_size=int(_number(env, prefix + "QUEUE", 10_000, 1)),
        backoff=_number(env, prefix + "BACKOFF", 2.0, 0.0),
        max_backoff=_number(env, prefix + "MAX_BACKOFF", 300.0, 0.0),
        state_dir=env.get(prefix + "STATE_DIR", "").strip(),
    )
