"""The generated dashboards: a JSON model Grafana 10 and 11 accept, stable, checked in."""

from __future__ import annotations

import json
import re
from itertools import combinations
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
import yaml

from impactwatch.catalog.loader import load_catalog
from impactwatch.catalog.model import Catalog
from impactwatch.cli import main
from impactwatch.contract import metrics as c
from impactwatch.contract.thresholds import PlatformThresholds
from impactwatch.dashboards import style as s
from impactwatch.dashboards.generate import generate, models
from impactwatch.dashboards.links import BOARDS

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "catalog.yaml"
CHECKED_IN = ROOT / "examples" / "generated" / "grafana"
REGENERATE = (
    "impactwatch dashboards --catalog examples/catalog.yaml --out examples/generated/grafana"
)
CATALOG = load_catalog(EXAMPLE)
MODELS = models(CATALOG)
BUILT_INS = {"__range", "__range_s", "__rate_interval", "__interval", "__data", "__field"}
BUILT_INS |= {"__url_time_range", "__all"}
METRICS = {m.name for m in (*c.ALL_METRICS, *c.ROUTER_METRICS, *c.POOL_ADVICE_METRICS)}
METRICS |= {
    f"{m.name}_{part}"
    for m in c.ALL_METRICS + c.ROUTER_METRICS
    if m.kind == "histogram"
    for part in ("bucket", "sum", "count")
}


def panels(kind: str) -> list[dict[str, Any]]:
    return [p for p in MODELS[kind]["panels"] if p["type"] != "row"]


def everything() -> list[dict[str, Any]]:
    return [p for kind in MODELS for p in MODELS[kind]["panels"]]


def strings(node: Any, key: str | None = None) -> list[tuple[str | None, str]]:
    """Every string in a JSON tree with the key it is under."""
    if isinstance(node, dict):
        return [pair for k, v in node.items() for pair in strings(v, k)]
    if isinstance(node, list):
        return [pair for v in node for pair in strings(v, key)]
    return [(key, node)] if isinstance(node, str) else []


@pytest.mark.parametrize("kind", sorted(BOARDS))
def test_dashboard_has_the_stable_identity_and_schema(kind: str) -> None:
    data = MODELS[kind]
    assert data["uid"] == BOARDS[kind].uid and data["title"] == BOARDS[kind].title
    assert data["schemaVersion"] == s.SCHEMA_VERSION == 39
    assert isinstance(data["refresh"], str) and data["time"] == {"from": "now-7d", "to": "now"}
    assert "rows" not in data and data["editable"] is True
    assert data["links"][0]["tags"] == ["impactwatch"] == data["tags"]


@pytest.mark.parametrize("kind", sorted(BOARDS))
def test_panel_ids_are_unique_and_the_grid_has_no_overlaps(kind: str) -> None:
    all_panels = MODELS[kind]["panels"]
    ids = [p["id"] for p in all_panels]
    assert len(ids) == len(set(ids)) and all(isinstance(i, int) and i > 0 for i in ids)
    boxes = []
    for p in all_panels:
        g = p["gridPos"]
        assert g["w"] >= 1 and g["h"] >= 1 and g["x"] >= 0 and g["y"] >= 0, p["title"]
        assert g["x"] + g["w"] <= 24, p["title"]
        if p["type"] == "row":
            assert (g["x"], g["w"], g["h"], p["collapsed"], p["panels"]) == (0, 24, 1, False, [])
        boxes.append((p["title"], g["x"], g["y"], g["x"] + g["w"], g["y"] + g["h"]))
    for a, b in combinations(boxes, 2):
        apart = a[3] <= b[1] or b[3] <= a[1] or a[4] <= b[2] or b[4] <= a[2]
        assert apart, f"{a[0]!r} overlaps {b[0]!r}"


@pytest.mark.parametrize("kind", sorted(BOARDS))
def test_every_panel_and_query_names_the_provisioned_data_source(kind: str) -> None:
    for p in panels(kind):
        assert p["datasource"] == s.DATASOURCE, p["title"]
        assert p["targets"], f"{p['title']} has no query"
        refs = [t["refId"] for t in p["targets"]]
        assert len(set(refs)) == len(refs), p["title"]
        for t in p["targets"]:
            assert t["datasource"] == {"type": "prometheus", "uid": "impactwatch-prometheus"}
            assert t["expr"].strip() and t["instant"] != t["range"], p["title"]
    for v in MODELS[kind]["templating"]["list"]:
        assert v["datasource"] == s.DATASOURCE and v["type"] == "query"


@pytest.mark.parametrize("kind", sorted(BOARDS))
def test_variables_are_the_ones_urls_use_and_every_reference_resolves(kind: str) -> None:
    names = [v["name"] for v in MODELS[kind]["templating"]["list"]]
    assert tuple(names) == BOARDS[kind].variables
    for v in MODELS[kind]["templating"]["list"]:
        assert re.fullmatch(rf"label_values\(.+, {v['name']}\)", v["query"]), v["query"]
        assert v["allValue"] == ".*" and v["current"]["value"] == ["$__all"]
    known = set(names) | BUILT_INS
    for key, text in strings(MODELS[kind]):
        for name in re.findall(r"\$\{?(\w+)", text):
            assert name in known or name == "1", f"${name} in {key}: {text[:80]}"


def test_metric_names_all_come_from_the_contract() -> None:
    for key, text in strings(MODELS):
        if key in ("expr", "query", "definition"):
            unknown = set(re.findall(r"\bimpactwatch_\w+", text)) - METRICS
            assert not unknown, f"not in the contract: {unknown}"
    source = ROOT / "impactwatch" / "dashboards"
    for path in source.glob("*.py"):
        assert not re.search(r"[\"']impactwatch_", path.read_text()), f"{path.name} spells one"


def test_platform_panels_turn_red_at_the_platform_alerts_limits() -> None:
    limits = PlatformThresholds()
    red_at = {
        "Scheduler heartbeat age": limits.scheduler_heartbeat_stale,
        "Scheduler lag (p95)": limits.scheduler_lag,
        "Scheduler lag": limits.scheduler_lag,
        "Largest XComs": limits.xcom_bloat_bytes,
        "Last successful poll": limits.collector_stale_after,
    }
    shown = {p["title"]: p for p in panels("platform")}
    for title, limit in red_at.items():
        steps = shown[title]["fieldConfig"]["defaults"]["thresholds"]["steps"]
        assert steps[-1] == {"color": "red", "value": limit}, title
    assert limits.scheduler_lag_quantile == 0.95  # the "p95" above
    for title in ("Scheduler lag (p95)", "Scheduler lag"):
        assert shown[title]["targets"][0]["expr"].startswith("histogram_quantile(0.95, ")


def test_links_point_at_real_dashboards_and_their_variables() -> None:
    by_uid = {b.uid: b for b in BOARDS.values()}
    urls = [text for key, text in strings(MODELS) if key == "url" and text]
    assert urls
    for url in urls:
        found = re.fullmatch(r"/d/([\w-]+)/([\w-]+)\?(.*)", url)
        assert found, url
        board = by_uid[found[1]]
        assert found[2] == board.slug
        for name, _ in parse_qsl(found[3].replace("${__url_time_range}", "")):
            assert name.removeprefix("var-") in board.variables, url


def test_panels_use_the_four_kinds_and_set_their_units() -> None:
    kinds = {p["type"] for p in everything()}
    assert kinds == {"row", "timeseries", "stat", "table", "bargauge"}
    for p in (p for kind in MODELS for p in panels(kind)):
        matrix = any(t["id"] == "groupingToMatrix" for t in p.get("transformations", []))
        if matrix:  # a heatmap: one query, its cells share one unit and one colour scale
            assert len(p["targets"]) == 1, p["title"]
            assert p["fieldConfig"]["defaults"]["unit"], p["title"]
            assert p["fieldConfig"]["defaults"]["color"]["mode"].startswith("continuous")
        elif p["type"] == "table":
            values = [o for o in p["fieldConfig"]["overrides"] if "Value #" in str(o["matcher"])]
            assert len(values) == len(p["targets"]), p["title"]
            assert all(any(x["id"] == "unit" for x in o["properties"]) for o in values)
        else:
            assert p["fieldConfig"]["defaults"]["unit"], p["title"]
    units = {text for key, text in strings(MODELS) if key in ("unit", "value")}
    assert {s.SECONDS, s.BYTES, s.SHARE, "currencyUSD"} <= units


def test_the_data_products_page_speaks_business_not_airflow() -> None:
    shown = ("title", "description", "displayName", "legendFormat", "label", "text")
    for key, text in strings(MODELS["data-products"]):
        if key in shown:
            words = re.sub(r"\$\{[^}]*\}|\{\{[^}]*\}\}", "", text).lower()
            jargon = re.findall(r"\b(dag|dags|task|tasks|xcom|pool|scheduler|airflow)\b", words)
            assert not jargon, f"{key}: {text}"


def test_importable_copies_ask_for_a_data_source() -> None:
    files = generate(CATALOG)
    for kind, board in BOARDS.items():
        shared = json.loads(files[f"import/{board.uid}.json"])
        assert shared["__inputs"][0]["name"] == s.IMPORT_INPUT
        text = json.dumps(shared)
        assert s.DATASOURCE_UID not in text
        assert text.count("${DS_IMPACTWATCH_PROMETHEUS}") > len(panels(kind))
        assert {k: v for k, v in shared.items() if not k.startswith("__")}.keys() == (
            MODELS[kind].keys()
        )


def test_provisioning_files_name_the_data_source_the_panels_use() -> None:
    files = generate(CATALOG)
    sources = yaml.safe_load(files["provisioning/datasources/impactwatch.yaml"])
    assert sources["datasources"][0]["uid"] == s.DATASOURCE_UID
    assert sources["datasources"][0]["url"] == "http://prometheus:9090"
    providers = yaml.safe_load(files["provisioning/dashboards/impactwatch.yaml"])
    assert providers["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards/impactwatch"
    for board in BOARDS.values():
        assert board.uid in files["README.md"]


def test_currency_and_catalog_shape_the_output() -> None:
    euro = Catalog.model_validate({"cost": {"currency": "EUR"}})
    assert "currencyEUR" in generate(euro)["dashboards/impactwatch-team.json"]
    assert s.currency_unit("XBT") == "suffix: XBT"
    assert generate(CATALOG) == generate(load_catalog(EXAMPLE))  # deterministic


def test_checked_in_files_are_what_the_generator_writes() -> None:
    files = generate(CATALOG)
    on_disk = {
        p.relative_to(CHECKED_IN).as_posix(): p.read_bytes()
        for p in CHECKED_IN.rglob("*")
        if p.is_file()
    }
    stale = sorted(
        rel
        for rel in files.keys() | on_disk.keys()
        if files.get(rel, "").encode("utf-8") != on_disk.get(rel)
    )
    assert not stale, f"examples/generated/grafana is out of date ({stale}); run: {REGENERATE}"


def test_cli_writes_then_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "grafana"
    assert main(["dashboards", "--catalog", str(EXAMPLE), "--out", str(out)]) == 0
    assert "9 written, 0 unchanged" in capsys.readouterr().out
    assert main(["dashboards", "--catalog", str(EXAMPLE), "--out", str(out), "--check"]) == 0
    (out / "dashboards" / "impactwatch-team.json").write_text("{}")
    (out / "import" / "old.json").write_text("{}")
    assert main(["dashboards", "--catalog", str(EXAMPLE), "--out", str(out), "--check"]) == 1
    err = capsys.readouterr().err
    assert "differs: dashboards/impactwatch-team.json" in err
    assert "no longer generated: import/old.json" in err
    assert "regenerate: impactwatch dashboards --catalog" in err
    custom = ["--prometheus-url", "http://prom:9090", "--dashboards-path", "/dash"]
    assert main(["dashboards", "--catalog", str(EXAMPLE), "--out", str(out), *custom]) == 0
    assert "http://prom:9090" in (out / "provisioning/datasources/impactwatch.yaml").read_text()


def test_cli_reports_a_bad_catalog(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "impact.yaml"
    bad.write_text("datasets:\n  x: {tier: gold}\n")
    assert main(["dashboards", "--catalog", str(bad), "--out", str(tmp_path / "o")]) == 1
    assert f"{bad}:2" in capsys.readouterr().err
