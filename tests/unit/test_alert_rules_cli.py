"""`impactwatch rules`: writes the tree, checks for drift, reports bad input with the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from impactwatch.alert_rules.generate import generate
from impactwatch.catalog.loader import load_catalog
from impactwatch.cli import main

EXAMPLE = str(Path(__file__).resolve().parents[2] / "examples" / "catalog.yaml")


def test_writes_then_reports_unchanged(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "prom"
    assert main(["rules", "--catalog", EXAMPLE, "--out", str(out)]) == 0
    assert (out / "rules" / "impactwatch-freshness.rules.yml").is_file()
    assert (out / "runbooks" / "data-products" / "customer_risk_scores.md").is_file()
    assert main(["rules", "--catalog", EXAMPLE, "--out", str(out)]) == 0
    count = len(generate(load_catalog(EXAMPLE)))
    last = capsys.readouterr().out.splitlines()[-1]
    assert last == f"{out}: 0 written, {count} unchanged, 0 removed"


def test_check_fails_on_drift_with_the_command(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    args = ["rules", "--catalog", EXAMPLE, "--out", str(tmp_path)]
    main(args)
    assert main([*args, "--check"]) == 0
    (tmp_path / "alertmanager.yml").write_text("edited by hand\n")
    assert main([*args, "--check"]) == 1
    err = capsys.readouterr().err
    assert "differs: alertmanager.yml" in err
    assert f"regenerate: impactwatch rules --catalog {EXAMPLE} --out {tmp_path}" in err


def test_router_url_token_file_and_settings_from_the_command_line(tmp_path: Path) -> None:
    args = ["rules", "--catalog", EXAMPLE, "--out", str(tmp_path)]
    assert (
        main(
            [
                *args,
                "--router-url",
                "http://router:9465/alertmanager",
                "--token-file",
                "/run/secrets/am-token",
                "--set",
                "freshness_for=2m",
                "--set",
                "collector_targets=a:9464,b:9464",
                "--set",
                "scheduler_heartbeat_stale=5m",
            ]
        )
        == 0
    )
    am = (tmp_path / "alertmanager.yml").read_text()
    assert 'url: "http://router:9465/alertmanager"' in am
    assert 'credentials_file: "/run/secrets/am-token"' in am
    assert "for: 2m" in (tmp_path / "rules" / "impactwatch-freshness.rules.yml").read_text()
    assert '["a:9464", "b:9464"]' in (tmp_path / "prometheus.yml").read_text()
    platform = (tmp_path / "rules" / "impactwatch-platform.rules.yml").read_text()
    assert "> 300\n" in platform and "> 600\n" in platform  # heartbeat: warning, critical


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--set", "fresh_for=1m"], "no setting 'fresh_for'"),
        (["--set", "freshness_for=soon"], "freshness_for"),
        (["--set", "freshness_for"], "write NAME=VALUE"),
        (["--set", "scheduler_lag=soon"], "scheduler_lag"),
        (["--set", "scheduler_lag_quantile=1"], "scheduler_lag_quantile"),
    ],
)
def test_bad_settings_exit_2_naming_the_setting(
    tmp_path: Path, capsys: pytest.CaptureFixture, extra: list[str], message: str
) -> None:
    assert main(["rules", "--catalog", EXAMPLE, "--out", str(tmp_path), *extra]) == 2
    assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_bad_catalog_exits_1_with_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    catalog = tmp_path / "impact.yaml"
    catalog.write_text("datasets:\n  x:\n    fresness: 1h\n")
    assert main(["rules", "--catalog", str(catalog), "--out", str(tmp_path / "out")]) == 1
    assert f"{catalog}:3" in capsys.readouterr().err


def test_list_settings_and_required_arguments(capsys: pytest.CaptureFixture) -> None:
    assert main(["rules", "--list-settings"]) == 0
    listing = capsys.readouterr().out
    assert "freshness_for" in listing and "router_url" in listing
    assert main(["rules"]) == 2
