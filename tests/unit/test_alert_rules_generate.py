"""The generated tree: no drift from the checked-in copy, valid for promtool and amtool, every
alert labelled and linked to a runbook that exists, metric names only from the contract."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from impactwatch.alert_rules.generate import generate
from impactwatch.alert_rules.promql import human_duration, prom_duration
from impactwatch.alert_rules.promtool import check_rules
from impactwatch.alert_rules.render import GENERATED
from impactwatch.alert_rules.settings import RuleSettings, SettingsError, settings_from_pairs
from impactwatch.alert_rules.writer import differences, write_tree
from impactwatch.catalog.loader import load_catalog, parse_catalog
from impactwatch.contract import alerts as names
from impactwatch.contract import metrics as c
from impactwatch.contract.promql import alternation
from impactwatch.contract.thresholds import PlatformThresholds

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "catalog.yaml"
CHECKED_IN = REPO / "examples" / "generated" / "prometheus"
REGENERATE = (
    ".venv/bin/impactwatch rules --catalog examples/catalog.yaml"
    " --out examples/generated/prometheus"
)


@pytest.fixture(scope="module")
def files() -> dict[str, str]:
    return generate(load_catalog(EXAMPLE), RuleSettings())


@pytest.fixture(scope="module")
def tree(files: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("generated")
    write_tree(out, files)
    return out


def rules_of(files: dict[str, str]) -> list[dict]:
    return [
        rule
        for rel, text in files.items()
        if rel.startswith("rules/")
        for g in yaml.safe_load(text)["groups"]
        for rule in g["rules"]
    ]


def test_checked_in_files_match_the_generator(tree: Path) -> None:
    """CI's drift check: regenerate, compare byte for byte with examples/generated/."""
    generated = {p.relative_to(tree).as_posix(): p.read_bytes() for p in tree.rglob("*.*")}
    checked_in = {
        p.relative_to(CHECKED_IN).as_posix(): p.read_bytes() for p in CHECKED_IN.rglob("*.*")
    }
    drift = sorted(
        f"{'differs' if rel in checked_in else 'missing'}: {rel}"
        for rel, data in generated.items()
        if checked_in.get(rel) != data
    ) + sorted(f"not generated any more: {rel}" for rel in set(checked_in) - set(generated))
    assert not drift, (
        "examples/generated/prometheus is out of date:\n  "
        + "\n  ".join(drift)
        + f"\nregenerate with:\n  {REGENERATE}"
    )


def test_generation_is_deterministic(files: dict[str, str]) -> None:
    assert generate(load_catalog(EXAMPLE), RuleSettings()) == files


def test_promtool_check_rules_passes_lint_included(tree: Path) -> None:
    result = check_rules(sorted((tree / "rules").glob("*.yml")))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "lint" not in (result.stdout + result.stderr).lower()


def test_promtool_check_config_and_amtool_check_config(tree: Path) -> None:
    prom = subprocess.run(
        ["promtool", "check", "config", str(tree / "prometheus.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert prom.returncode == 0, prom.stdout + prom.stderr
    assert "4 rule files found" in prom.stdout
    am = subprocess.run(
        ["amtool", "check-config", str(tree / "alertmanager.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert am.returncode == 0, am.stdout + am.stderr


@pytest.mark.parametrize(
    ("labels", "route"),
    [
        ({"team": "risk", "dataset": "customer_risk_scores", "severity": "critical"}, "risk"),
        ({"team": "platform", "component": "scheduler"}, "platform"),
        ({"team": "nobody", "dag_id": "x"}, None),  # unknown team: the root route
    ],
)
def test_every_route_reaches_the_router(tree: Path, labels: dict[str, str], route: str) -> None:
    result = subprocess.run(
        [
            "amtool",
            "config",
            "routes",
            "test",
            f"--config.file={tree / 'alertmanager.yml'}",
            "--verify.receivers=impactwatch-router",
            *(f"{k}={v}" for k, v in labels.items()),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("alertname", ["ImpactwatchRouterOutboxStuck", "ImpactwatchRouterFailing"])
def test_alerts_about_the_routers_delivery_also_go_out_of_band(tree: Path, alertname: str) -> None:
    result = subprocess.run(
        [
            "amtool",
            "config",
            "routes",
            "test",
            f"--config.file={tree / 'alertmanager.yml'}",
            "--verify.receivers=impactwatch-out-of-band,impactwatch-router",
            f"alertname={alertname}",
            "team=platform",
            "component=router",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_out_of_band_path_is_required_and_can_be_a_webhook() -> None:
    with pytest.raises(SettingsError, match="out_of_band_email or out_of_band_webhook_url"):
        settings_from_pairs(["out_of_band_email="])
    settings = settings_from_pairs(
        ["out_of_band_email=", "out_of_band_webhook_url=https://pager.example/hook"]
    )
    config = yaml.safe_load(generate(load_catalog(EXAMPLE), settings)["alertmanager.yml"])
    (out_of_band,) = [r for r in config["receivers"] if r["name"] == "impactwatch-out-of-band"]
    assert out_of_band == {
        "name": "impactwatch-out-of-band",
        "webhook_configs": [{"url": "https://pager.example/hook", "send_resolved": True}],
    }


def test_alertmanager_config_semantics(files: dict[str, str]) -> None:
    config = yaml.safe_load(files["alertmanager.yml"])
    receiver, out_of_band = config["receivers"]
    (hook,) = receiver["webhook_configs"]
    assert hook["url"] == "http://127.0.0.1:9465/alertmanager" and hook["send_resolved"]
    auth = hook["http_config"]["authorization"]
    assert auth == {
        "type": "Bearer",
        "credentials_file": "/etc/alertmanager/impactwatch-webhook-token",
    }
    assert "credentials" not in auth and "bearer_token" not in hook["http_config"]
    route = config["route"]
    assert route["group_by"] == ["team", "dataset", "dag_id", "component"]
    assert (route["group_wait"], route["group_interval"], route["repeat_interval"]) == (
        "10s",
        "1m",
        "1h",
    )
    first, *teams = [(r["receiver"], r["matchers"], r.get("continue")) for r in route["routes"]]
    assert first == (
        "impactwatch-out-of-band",
        ['alertname=~"ImpactwatchRouterFailing|ImpactwatchRouterOutboxStuck"'],
        True,  # and on to the router: a channel that still works hears of it too
    )
    assert teams == [
        ("impactwatch-router", [f'team="{t}"'], None) for t in sorted(load_catalog(EXAMPLE).teams)
    ]
    assert out_of_band == {
        "name": "impactwatch-out-of-band",
        "email_configs": [
            {
                "to": "root@localhost",
                "from": "alertmanager@localhost",
                "smarthost": "localhost:25",
                "require_tls": False,
                "send_resolved": True,
            }
        ],
    }
    (inhibit,) = config["inhibit_rules"]
    assert inhibit["source_matchers"] == ['severity="critical"']
    assert inhibit["target_matchers"] == ['severity="warning"']
    assert inhibit["equal"] == ["alertname", "team", "dataset", "dag_id", "component", "pool"]
    text = files["alertmanager.yml"]
    for documented in ("group_wait 10s", "group_interval 1m", "repeat_interval 1h"):
        assert documented in text  # the timing is explained where it is set


def test_every_alert_is_labelled_annotated_and_has_its_runbook(files: dict[str, str]) -> None:
    alerts = [r for r in rules_of(files) if "alert" in r]
    assert {a["alert"] for a in alerts} == set(names.ALERT_NAMES)
    base = RuleSettings().runbook_base_url
    for a in alerts:
        labels, notes = a["labels"], a["annotations"]
        assert labels["severity"] in names.SEVERITIES, a["alert"]
        assert labels["kind"] in (
            "freshness",
            "duration",
            "deadline",
            "failure",
            "platform",
            "cost",
            "predicted",
        )
        if labels["kind"] == "platform":  # business alerts take team, dataset or dag_id
            assert {"team", "component"} <= set(labels)  # from the series (promtool tests)
        # Alerts about data products and pipelines also say what refreshes them (the router
        # folds by it); platform and cost alerts do not.
        producers = (
            {"producers"}
            if labels["kind"] in ("freshness", "duration", "deadline", "failure")
            else set()
        )
        if labels["kind"] == "predicted":  # the times and task the router words
            producers = {"producers", "expected_at", "due_at", "task_id", "behind_seconds"}
        assert set(notes) == {"summary", "description", "runbook_url"} | producers, a["alert"]
        assert notes["runbook_url"].startswith(base + "/")
        page = "runbooks/" + notes["runbook_url"][len(base) + 1 :]
        assert page in files, f"{a['alert']}: no runbook {page}"
        assert "{{" not in notes["runbook_url"]


def test_rules_use_only_contract_metric_names(files: dict[str, str]) -> None:
    known = {spec.name for spec in (*c.ALL_METRICS, *c.ROUTER_METRICS, *c.COST_RECONCILE_METRICS)}
    known |= {s.series(x) for s in c.ALL_METRICS if s.kind == "histogram" for x in ("bucket",)}
    recorded = {r["record"] for r in rules_of(files) if "record" in r}
    for rule in rules_of(files):
        text = rule["expr"] + " ".join((rule.get("annotations") or {}).values())
        for name in re.findall(r"\bimpactwatch[:_][a-z0-9_:]+", text):
            assert name in known or name in recorded, f"unknown metric {name}"


def test_settings_ship_a_freshness_path_under_a_minute() -> None:
    s = RuleSettings()
    assert s.evaluation_interval + s.freshness_for + s.group_wait < 60
    assert s.scrape_interval <= s.evaluation_interval


def test_platform_thresholds_are_the_contracts_read_with_human_durations() -> None:
    shipped = RuleSettings()
    for name, field in PlatformThresholds.model_fields.items():
        assert getattr(shipped, name) == field.default, name
        assert RuleSettings.model_fields[name].description == field.description, name
    assert RuleSettings(scheduler_lag="2m", collector_stale_after="1h").scheduler_lag == 120.0
    with pytest.raises(ValidationError, match="scheduler_heartbeat_stale"):
        RuleSettings(scheduler_heartbeat_stale="0s")  # the contract's bound: gt=0


def test_catalog_without_critical_pipelines_has_no_failure_rule() -> None:
    catalog, problems = parse_catalog(
        "teams: {data: {slack_channel: '#d'}}\ndefaults: {team: data}\n"
        "pipelines: {etl.v2: {team: data, max_duration: 1h}}\n"
    )
    assert not problems and catalog is not None
    alerts = [r for r in rules_of(generate(catalog)) if "alert" in r]
    assert names.CRITICAL_PIPELINE_FAILED not in {a["alert"] for a in alerts}
    assert {a["alert"] for a in alerts if a["labels"]["kind"] == "freshness"} == {
        names.DATA_PRODUCT_STALE
    }  # only the generic rule: the catalog has no data product


def test_shipped_settings_can_be_overridden(files: dict[str, str]) -> None:
    settings = RuleSettings(
        freshness_for="2m", evaluation_interval="30s", runbook_base_url="https://wiki/rb/"
    )
    changed = generate(load_catalog(EXAMPLE), settings)
    rules = rules_of(changed)
    stale = [r for r in rules if r.get("alert") == names.DATA_PRODUCT_STALE]
    assert {r["for"] for r in stale} == {"2m"}
    assert all(r["annotations"]["runbook_url"].startswith("https://wiki/rb/") for r in stale)
    assert "interval: 30s" in changed["rules/impactwatch-freshness.rules.yml"]


def test_differences_name_changed_missing_and_stale_files(tmp_path: Path) -> None:
    files = {"rules/a.rules.yml": f"# {GENERATED}\n"}
    write_tree(tmp_path, files)
    (tmp_path / "notes.md").write_text("mine")  # not generated: never touched
    (tmp_path / "runbooks").mkdir()
    (tmp_path / "runbooks" / "Old.md").write_text(files["rules/a.rules.yml"])
    assert differences(tmp_path, files) == ["no longer generated: runbooks/Old.md"]
    result = write_tree(tmp_path, files)
    assert result.removed == ["runbooks/Old.md"] and result.unchanged == ["rules/a.rules.yml"]
    assert (tmp_path / "notes.md").read_text() == "mine"
    assert differences(tmp_path, {"rules/a.rules.yml": "other"}) == ["differs: rules/a.rules.yml"]


def test_promql_helpers() -> None:
    assert alternation(["etl.v2", "a"]) == "a|etl\\.v2"
    assert alternation([]) == ""
    assert [prom_duration(x) for x in (0, 30, 90, 3600, 5400, 0.5)] == [
        "0s",
        "30s",
        "1m30s",
        "1h",
        "1h30m",
        "500ms",
    ]
    assert [human_duration(x) for x in (5, 5400, 93600, 7200)] == ["5s", "1h 30m", "1d 2h", "2h"]


def test_catalog_text_cannot_break_the_templates(tmp_path: Path) -> None:
    catalog, problems = parse_catalog(
        "teams: {d: {slack_channel: '#d'}}\ndefaults: {team: d}\ndatasets:\n"
        "  x: {title: 'Odd {{ .Title }} $value', freshness: 1h, produced_by: etl,"
        " description: 'has {{ braces }}'}\n"
    )
    assert not problems and catalog is not None
    out = tmp_path / "out"
    write_tree(out, generate(catalog))
    result = check_rules(sorted((out / "rules").glob("*.yml")))
    assert result.returncode == 0, result.stdout + result.stderr
