"""Everything `impactwatch dashboards` writes, as {relative path: text}: pure, deterministic.

dashboards/<uid>.json                      provisioned dashboards (data source by UID)
import/<uid>.json                          the same, for Grafana's Import form (data source input)
provisioning/datasources/impactwatch.yaml  the Prometheus data source
provisioning/dashboards/impactwatch.yaml   the dashboard provider
README.md                                  UIDs, URL variables, how to import

One writer for JSON (`json.dumps(sort_keys=True, indent=2)`), so diffs stay readable and the
checked-in copy for the example catalog can be compared byte for byte.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from grafanalib import core as g
from grafanalib._gen import DashboardEncoder

from impactwatch.catalog.model import Catalog
from impactwatch.dashboards import links
from impactwatch.dashboards.data_products import data_products
from impactwatch.dashboards.platform import platform
from impactwatch.dashboards.provisioning import (
    DASHBOARDS_DIR,
    DATASOURCES_FILE,
    IMPORT_DIR,
    PROVIDERS_FILE,
    GrafanaSettings,
    datasources,
    importable,
    providers,
    readme,
)
from impactwatch.dashboards.team import team

BUILDERS: dict[str, Callable[[Catalog], g.Dashboard]] = {
    links.DATA_PRODUCTS: data_products,
    links.TEAM: team,
    links.PLATFORM: platform,
}


def tidy(node: Any) -> Any:
    """Drop the null fields grafanalib writes for options left unset. A null `value` stays: it is
    the base of threshold steps (-infinity)."""
    if isinstance(node, dict):
        return {k: tidy(v) for k, v in node.items() if v is not None or k == "value"}
    if isinstance(node, list):
        return [tidy(v) for v in node]
    return node


# Written by grafanalib for Grafana 4-6 dashboards; ignored since, and confusing to readers.
_LEGACY = ("__inputs", "rows", "style", "hideControls", "sharedCrosshair", "gnetId")


def model(dashboard: g.Dashboard) -> dict[str, Any]:
    """The dashboard's JSON model as plain data."""
    data = tidy(json.loads(json.dumps(dashboard.to_json_data(), cls=DashboardEncoder)))
    return {k: v for k, v in data.items() if k not in _LEGACY}


def models(catalog: Catalog) -> dict[str, dict[str, Any]]:
    """Each dashboard's JSON model, by kind."""
    return {kind: model(build(catalog)) for kind, build in BUILDERS.items()}


def render_json(data: Mapping[str, Any]) -> str:
    return json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def generate(catalog: Catalog, settings: GrafanaSettings | None = None) -> dict[str, str]:
    """Every generated file, by path relative to the output folder, sorted."""
    settings = settings or GrafanaSettings()
    files: dict[str, str] = {}
    for kind, data in models(catalog).items():
        uid = links.BOARDS[kind].uid
        files[f"{DASHBOARDS_DIR}/{uid}.json"] = render_json(data)
        files[f"{IMPORT_DIR}/{uid}.json"] = render_json(importable(data))
    files[DATASOURCES_FILE] = datasources(settings)
    files[PROVIDERS_FILE] = providers(settings)
    files["README.md"] = readme(settings)
    return dict(sorted(files.items()))


def write_tree(out: Path, files: Mapping[str, str]) -> list[str]:
    """Write `files` under `out`; returns the paths whose content changed."""
    changed = []
    for rel, text in files.items():
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_file() and target.read_bytes() == text.encode("utf-8"):
            continue
        target.write_bytes(text.encode("utf-8"))
        changed.append(rel)
    return changed


def differences(out: Path, files: Mapping[str, str]) -> list[str]:
    """How `out` differs from `files`: changed, missing, and extra files in generated folders."""
    problems = []
    for rel, text in files.items():
        target = out / rel
        if not target.is_file():
            problems.append(f"missing: {rel}")
        elif target.read_bytes() != text.encode("utf-8"):
            problems.append(f"differs: {rel}")
    for folder in (DASHBOARDS_DIR, IMPORT_DIR):
        for path in sorted((out / folder).glob("*.json")):
            rel = path.relative_to(out).as_posix()
            if rel not in files:
                problems.append(f"no longer generated: {rel}")
    return problems
