from __future__ import annotations

from pathlib import Path

import pytest

from impactwatch.airflow_listeners.config import ConfigError, events_url, from_env


def test_unconfigured_means_no_listener() -> None:
    assert from_env({}) is None
    assert from_env({"IMPACTWATCH_COLLECTOR_URL": "  "}) is None


def test_defaults_and_the_events_path() -> None:
    cfg = from_env({"IMPACTWATCH_COLLECTOR_URL": "http://collector:9464"})
    assert cfg is not None
    assert cfg.url == "http://collector:9464/v1/events"
    assert cfg.token is None and cfg.flush_timeout == 0.03 and cfg.batch_size == 500
    assert cfg.backoff_file.endswith(".backoff")


@pytest.mark.parametrize(
    ("base", "url"),
    [
        ("http://c:9464/", "http://c:9464/v1/events"),
        ("https://c/impactwatch", "https://c/impactwatch/v1/events"),
        ("http://c:9464/v1/events", "http://c:9464/v1/events"),
        ("http://[::1]:9464", "http://[::1]:9464/v1/events"),
    ],
)
def test_events_url(base: str, url: str) -> None:
    assert events_url(base) == url


def test_token_from_the_environment_or_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("s3cret\n")
    env = {"IMPACTWATCH_COLLECTOR_URL": "http://c", "IMPACTWATCH_TOKEN_FILE": str(secret)}
    assert from_env(env).token == "s3cret"  # type: ignore[union-attr]
    assert from_env({**env, "IMPACTWATCH_TOKEN": "direct"}).token == "direct"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"IMPACTWATCH_COLLECTOR_URL": "collector:9464"}, "IMPACTWATCH_COLLECTOR_URL"),
        (
            {"IMPACTWATCH_COLLECTOR_URL": "http://c", "IMPACTWATCH_LISTENER_FLUSH_TIMEOUT": "x"},
            "IMPACTWATCH_LISTENER_FLUSH_TIMEOUT='x' is not a number",
        ),
        (
            {"IMPACTWATCH_COLLECTOR_URL": "http://c", "IMPACTWATCH_LISTENER_BATCH": "0"},
            "must be at least 1",
        ),
        (
            {"IMPACTWATCH_COLLECTOR_URL": "http://c", "IMPACTWATCH_TOKEN_FILE": "/nonexistent/t"},
            "cannot read '/nonexistent/t'",
        ),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        from_env(env)
