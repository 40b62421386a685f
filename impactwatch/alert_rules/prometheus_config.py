"""prometheus.yml: scrape the collector and router, load the rule files, send to Alertmanager.

The intervals here and in the rule groups are the ones the latency budget is computed for;
`promtool check config` validates the file in the tests.
"""

from __future__ import annotations

import json

from impactwatch.alert_rules.promql import prom_duration
from impactwatch.alert_rules.render import GENERATED, comment
from impactwatch.alert_rules.settings import RuleSettings

RULES_DIR = "rules"


def _targets(targets: list[str]) -> str:
    return "[" + ", ".join(json.dumps(t) for t in targets) + "]"


def render_prometheus(settings: RuleSettings) -> str:
    s = settings
    scrape, evaluate = prom_duration(s.scrape_interval), prom_duration(s.evaluation_interval)
    head = comment(
        f"{GENERATED}\n\n"
        "A minimal Prometheus config for impactwatch: scrape the collector and the router, "
        "evaluate the generated rules, send alerts to Alertmanager. Merge it into your own "
        "config if you have one: keep the job names (the collector-down alert uses "
        f"job={s.collector_job!r}) and the intervals (the latency budget assumes them).\n\n"
        f"scrape_interval {scrape}: collector values (runs in flight, pools) are at most this "
        "old. Freshness does not wait on it: ages are computed at evaluation from timestamps.\n"
        f"evaluation_interval {evaluate}: a breach is noticed at most this late (each rule "
        "group also sets it, so a different global default cannot slow the alerts)."
    )
    body = f"""global:
  scrape_interval: {scrape}
  evaluation_interval: {evaluate}

rule_files:
  - {RULES_DIR}/*.rules.yml

alerting:
  alertmanagers:
    - static_configs:
        - targets: {_targets(s.alertmanager_targets)}

scrape_configs:
  - job_name: {json.dumps(s.collector_job)}
    static_configs:
      - targets: {_targets(s.collector_targets)}
  - job_name: {json.dumps(s.router_job)}
    static_configs:
      - targets: {_targets(s.router_targets)}
"""
    if s.cost_reconcile_targets:  # `impactwatch cost reconcile`, when it runs
        body += f"""  - job_name: {json.dumps(s.cost_reconcile_job)}
    static_configs:
      - targets: {_targets(s.cost_reconcile_targets)}
"""
    if s.pool_advice_targets:  # `impactwatch pools advise --listen`, when it runs
        body += f"""  - job_name: {json.dumps(s.pool_advice_job)}
    static_configs:
      - targets: {_targets(s.pool_advice_targets)}
"""
    return head + body
