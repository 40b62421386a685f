"""Everything `impactwatch rules` writes, as {relative path: text}: pure, deterministic.

rules/impactwatch-freshness.rules.yml   per data product of the catalog (+ one generic)
rules/impactwatch-pipelines.rules.yml   duration, deadline, failure (generic, joined)
rules/impactwatch-platform.rules.yml    scheduler, pools, XCom, parsing, collector, router
rules/impactwatch-cost.rules.yml        run cost anomaly, cost model off against the AWS bill
alertmanager.yml                        one receiver (the router), routes, inhibition
prometheus.yml                          scrape jobs, rule files, Alertmanager
runbooks/                               README, one page per alert and per data product
"""

from __future__ import annotations

from impactwatch.alert_rules.alertmanager_config import render_alertmanager
from impactwatch.alert_rules.cost import cost_group
from impactwatch.alert_rules.freshness import freshness_group
from impactwatch.alert_rules.pipelines import pipelines_group
from impactwatch.alert_rules.platform import platform_group
from impactwatch.alert_rules.prometheus_config import RULES_DIR, render_prometheus
from impactwatch.alert_rules.render import render_group
from impactwatch.alert_rules.rules_model import Group
from impactwatch.alert_rules.runbooks import runbook_files
from impactwatch.alert_rules.settings import RuleSettings
from impactwatch.catalog.model import Catalog

RUNBOOKS_DIR = "runbooks"


def rule_groups(catalog: Catalog, settings: RuleSettings) -> list[Group]:
    return [
        freshness_group(catalog, settings),
        pipelines_group(catalog, settings),
        platform_group(catalog, settings),
        cost_group(catalog, settings),
    ]


def generate(catalog: Catalog, settings: RuleSettings | None = None) -> dict[str, str]:
    """Every generated file, by path relative to the output folder, sorted."""
    settings = settings or RuleSettings()
    files = {
        f"{RULES_DIR}/{g.name}.rules.yml": render_group(g, settings)
        for g in rule_groups(catalog, settings)
    }
    files["alertmanager.yml"] = render_alertmanager(catalog, settings)
    files["prometheus.yml"] = render_prometheus(settings)
    for path, text in runbook_files(catalog, settings).items():
        files[f"{RUNBOOKS_DIR}/{path}"] = text
    return dict(sorted(files.items()))
