"""`impactwatch pools apply` against a real Airflow API server (`airflow api-server`, simple
auth manager, JWT from /auth/token), one per module, on its own SQLite metadata DB.

Airflow has pools heavy_etl (4), light_transforms (8) and untouched (3); the state DB holds
the seeded article history (tests/support/pool_history.py) for heavy_etl, light_transforms
and external_apis (a pool Airflow does not have).
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from impactwatch import cli
from impactwatch.catalog.model import Catalog
from impactwatch.collector.state.schema import create_or_upgrade, make_engine
from impactwatch.devtools.airflow_home import AirflowHome
from impactwatch.pools.advice import AdviceSettings, advise_all
from impactwatch.pools.airflow_api import AirflowApi
from impactwatch.pools.usage import WEEK, HourOfWeek
from tests.support import pool_history as ph
from tests.support.moto_server import free_port

pytestmark = pytest.mark.integration
PASSWORD = "pools-test-password"
UNTIL = ph.MONDAY + 4 * WEEK


@pytest.fixture(scope="module")
def airflow_api(airflow_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("airflow-pools")
    passwords = folder / "passwords.json"
    passwords.write_text(json.dumps({"admin": PASSWORD}))
    home = AirflowHome(
        folder / "home",
        f"sqlite:///{folder / 'airflow.db'}",
        airflow_bin=airflow_bin,
        extra_env={
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        },
    )
    home.migrate()
    for name, slots in (("heavy_etl", 4), ("light_transforms", 8), ("untouched", 3)):
        home.set_pool(name, slots)
    port = free_port()
    log = (folder / "api-server.log").open("wb")
    proc = subprocess.Popen(
        [str(airflow_bin), "api-server", "--host", "127.0.0.1", "--port", str(port), "-w", "1"],
        env=home.env(),
        cwd=home.home,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/v2/monitor/health", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    tail = (folder / "api-server.log").read_text(errors="replace")[-3000:]
                    pytest.fail(f"airflow api-server did not start:\n{tail}", pytrace=False)
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    folder = tmp_path_factory.mktemp("pools-state")
    url = f"sqlite:///{folder / 'state.db'}"
    engine = make_engine(url)
    create_or_upgrade(engine)
    ph.store(engine, ph.history(4))
    engine.dispose()
    catalog = folder / "catalog.yaml"
    catalog.write_text(json.dumps(ph.CATALOG))  # JSON is YAML
    return url, str(catalog)


@pytest.fixture
def login(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IMPACTWATCH_AIRFLOW_API_TOKEN", raising=False)
    monkeypatch.setenv("IMPACTWATCH_AIRFLOW_API_USERNAME", "admin")
    monkeypatch.setenv("IMPACTWATCH_AIRFLOW_API_PASSWORD", PASSWORD)


def slots(url: str) -> dict[str, int]:
    api = AirflowApi(url, username="admin", password=PASSWORD)
    try:
        return {p.name: p.slots for p in api.pools()}
    finally:
        api.close()


def advised_now(pool: str) -> int:
    catalog = Catalog.model_validate(ph.CATALOG)
    hours = HourOfWeek()
    (advice,) = advise_all(
        [t for t in ph.history(4) if t.pool == pool],
        catalog,
        configured={},
        since=UNTIL - 4 * WEEK,
        until=UNTIL,
        hours=hours,
        settings=AdviceSettings(),
    )
    return advice.slots_at(time.time(), hours)


def apply(url: str, state: tuple[str, str], *extra: str) -> list[str]:
    return [
        "pools",
        "apply",
        "--catalog",
        state[1],
        "--state-db",
        state[0],
        "--airflow-api",
        url,
        "--until",
        "2026-02-02T00:00",
        *extra,
    ]


def test_dry_run_changes_nothing_and_says_what_it_would(
    airflow_api: str, state: tuple[str, str], login: None, capsys: pytest.CaptureFixture[str]
) -> None:
    before = slots(airflow_api)
    assert cli.main(apply(airflow_api, state, "--pool", "heavy_etl")) == 0
    out = capsys.readouterr().out
    target = advised_now("heavy_etl")
    assert f"heavy_etl\twould_set\t4 -> {target}" in out or target == 4
    assert slots(airflow_api) == before


def test_apply_changes_that_pool_only_and_is_idempotent(
    airflow_api: str, state: tuple[str, str], login: None, capsys: pytest.CaptureFixture[str]
) -> None:
    before = slots(airflow_api)
    target = advised_now("heavy_etl")
    assert cli.main(apply(airflow_api, state, "--pool", "heavy_etl", "--yes")) == 0
    after = slots(airflow_api)
    assert after == {**before, "heavy_etl": target}
    assert after["untouched"] == 3 and after["light_transforms"] == 8
    capsys.readouterr()
    assert cli.main(apply(airflow_api, state, "--pool", "heavy_etl", "--yes")) == 0
    assert "heavy_etl\tunchanged" in capsys.readouterr().out
    assert slots(airflow_api) == after


def test_a_pool_airflow_lacks_is_a_clear_failure_and_the_others_still_apply(
    airflow_api: str, state: tuple[str, str], login: None, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(apply(airflow_api, state, "--pool", "external_apis", "--pool", "heavy_etl"))
    out = capsys.readouterr().out
    assert code == 1
    assert "external_apis\tfailed" in out and "does not exist in Airflow" in out
    assert "heavy_etl\t" in out and "untouched" not in out


def test_wrong_password_is_a_clear_401(
    airflow_api: str,
    state: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("IMPACTWATCH_AIRFLOW_API_USERNAME", "admin")
    monkeypatch.setenv("IMPACTWATCH_AIRFLOW_API_PASSWORD", "wrong")
    assert cli.main(apply(airflow_api, state, "--pool", "heavy_etl")) == 2
    err = capsys.readouterr().err
    assert "refused user 'admin' at /auth/token (401)" in err and "wrong" not in err


def test_bad_token_is_a_clear_error(
    airflow_api: str,
    state: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("IMPACTWATCH_AIRFLOW_API_USERNAME", raising=False)
    monkeypatch.setenv("IMPACTWATCH_AIRFLOW_API_TOKEN", "not-a-jwt")
    assert cli.main(apply(airflow_api, state, "--pool", "heavy_etl")) == 2
    err = capsys.readouterr().err
    assert "rejected the token as invalid (403)" in err and "not-a-jwt" not in err


def test_no_credentials_is_a_clear_401(
    airflow_api: str,
    state: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name in ("TOKEN", "USERNAME", "PASSWORD"):
        monkeypatch.delenv(f"IMPACTWATCH_AIRFLOW_API_{name}", raising=False)
    assert cli.main(apply(airflow_api, state, "--pool", "heavy_etl")) == 2
    assert "answered 401 Unauthorized" in capsys.readouterr().err


def test_unreachable_api_is_a_clear_error(
    state: tuple[str, str], login: None, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert cli.main(apply(url, state, "--pool", "heavy_etl")) == 2
    err = capsys.readouterr().err
    assert f"cannot reach Airflow API at {url}: connection refused" in err
