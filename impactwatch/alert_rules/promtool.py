"""Run `promtool` on generated rules: `check rules`, and `test rules` from cases built in Python.

Test cases are plain data (`series`, `case`, `expect`) so that the input series are spelled with
the metric contract's names, and so that a test can ask which alerts its cases cover.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from impactwatch.alert_rules.promql import name_of
from impactwatch.contract.metrics import MetricSpec

TestGroup = dict[str, Any]


def find_promtool() -> str:
    binary = shutil.which("promtool")
    if binary is None:
        raise FileNotFoundError(
            "promtool not found: install Debian's `prometheus` package (`make test` does)"
        )
    return binary


def series(metric: MetricSpec | str, labels: Mapping[str, str], values: str) -> dict[str, str]:
    """One input series, e.g. series(c.DATASET_LAST_UPDATED, {"dataset": "x"}, "0x100")."""
    inner = ", ".join(f"{k}={json.dumps(v)}" for k, v in labels.items())
    return {"series": f"{name_of(metric)}{{{inner}}}", "values": values}


def expect(labels: Mapping[str, str], annotations: Mapping[str, str]) -> dict[str, Any]:
    """One alert expected to be firing: every label and annotation, exactly."""
    return {"exp_labels": dict(labels), "exp_annotations": dict(annotations)}


def case(at: str, alertname: str, *alerts: dict[str, Any]) -> dict[str, Any]:
    """At `at` (e.g. "90m45s"), exactly `alerts` fire under `alertname` (none: nothing fires)."""
    return {"eval_time": at, "alertname": alertname, "exp_alerts": list(alerts)}


def group(
    name: str, input_series: Sequence[dict[str, str]], cases: Sequence[dict[str, Any]], **extra: Any
) -> TestGroup:
    return {
        "name": name,
        "interval": extra.pop("interval", "15s"),
        "input_series": list(input_series),
        "alert_rule_test": list(cases),
        **extra,
    }


def alerts_covered(groups: Iterable[TestGroup]) -> tuple[set[str], set[str]]:
    """(alert names some case expects firing, alert names some case expects silent)."""
    firing, silent = set(), set()
    for g in groups:
        for c in g.get("alert_rule_test", ()):
            (firing if c["exp_alerts"] else silent).add(c["alertname"])
    return firing, silent


def write_rule_files(files: Mapping[str, str], out: Path) -> list[Path]:
    """The rule files among generated `files` ({path: text}), written into `out`."""
    paths = []
    for rel, text in files.items():
        if rel.startswith("rules/"):
            path = out / Path(rel).name
            path.write_text(text, encoding="utf-8")
            paths.append(path)
    return paths


def check_rules(paths: Sequence[Path]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [find_promtool(), "check", "rules", *map(str, paths)],
        capture_output=True,
        text=True,
        check=False,
    )


def run_rule_tests(
    rule_files: Sequence[Path], groups: Sequence[TestGroup], evaluation_interval: str = "15s"
) -> subprocess.CompletedProcess[str]:
    """`promtool test rules` on `groups` against `rule_files`; output names failing cases."""
    spec = {
        "rule_files": [str(p) for p in rule_files],
        "evaluation_interval": evaluation_interval,
        "tests": list(groups),
    }
    with tempfile.TemporaryDirectory(prefix="iw-promtool-") as folder:
        path = Path(folder) / "tests.yml"
        path.write_text(json.dumps(spec, indent=1), encoding="utf-8")  # JSON is YAML
        return subprocess.run(
            [find_promtool(), "test", "rules", str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
