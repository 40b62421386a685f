from __future__ import annotations

import threading
from pathlib import Path

import pytest

from impactwatch.cli import build_parser, main
from impactwatch.router.cli import run
from impactwatch.router.settings import RouterSettings

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "catalog.yaml"


def test_the_main_cli_has_the_router_subcommand() -> None:
    args = build_parser().parse_args(["router", "--catalog", "c.yaml", "--listen", "h:1"])
    assert (args.catalog, args.listen, args.state_db) == ("c.yaml", "h:1", None)


def test_bad_flags_and_an_open_webhook_are_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.delenv("IMPACTWATCH_WEBHOOK_TOKEN", raising=False)
    assert main(["router", "--listen", "nowhere"]) == 2
    assert "--listen" in capsys.readouterr().err
    db = f"sqlite:///{tmp_path / 'r.db'}"
    assert main(["router", "--listen", "0.0.0.0:0", "--state-db", db]) == 2
    assert "IMPACTWATCH_WEBHOOK_TOKEN" in capsys.readouterr().err
    db = f"sqlite:///{tmp_path / 'r2.db'}"
    assert main(["router", "--listen", "127.0.0.1:0", "--state-db", db]) == 2  # loopback too
    assert "IMPACTWATCH_WEBHOOK_TOKEN" in capsys.readouterr().err


def test_the_router_starts_and_stops_cleanly(tmp_path: Path) -> None:
    settings = RouterSettings(
        catalog=str(EXAMPLE),
        state_db=f"sqlite:///{tmp_path / 'r.db'}",
        listen="127.0.0.1:0",
        jsonl_path=str(tmp_path / "m.jsonl"),
        webhook_token="router-cli-test-token",
    )
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    assert run(settings, stop) == 0
