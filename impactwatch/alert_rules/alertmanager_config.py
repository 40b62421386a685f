"""alertmanager.yml from the catalog: the router as the receiver, a route per team, inhibition,
and an out-of-band receiver (email, webhook) for alerts about the router's own delivery.

Written as commented text (the comments are the documentation of each timing choice);
`amtool check-config` validates it in the tests.
"""

from __future__ import annotations

import json

from impactwatch.alert_rules.promql import prom_duration
from impactwatch.alert_rules.render import GENERATED, comment
from impactwatch.alert_rules.settings import RuleSettings
from impactwatch.catalog.model import Catalog
from impactwatch.contract.alerts import (
    ALERTNAME,
    CRITICAL,
    INCIDENT_LABELS,
    OUT_OF_BAND,
    SEVERITY,
    SUBJECT_LABELS,
    TEAM,
    WARNING,
)

RECEIVER = "impactwatch-router"
OUT_OF_BAND_RECEIVER = "impactwatch-out-of-band"
GROUP_BY = (TEAM, *SUBJECT_LABELS)
INHIBIT_EQUAL = (ALERTNAME, TEAM, *INCIDENT_LABELS)


def _q(value: str) -> str:
    """A double-quoted YAML (and PromQL) string."""
    return json.dumps(value)


def _sq(value: str) -> str:
    """A single-quoted YAML string (matchers read best with their double quotes inside)."""
    return "'" + value.replace("'", "''") + "'"


def _list(values: tuple[str, ...]) -> str:
    return "[" + ", ".join(values) + "]"


def _teams(catalog: Catalog) -> list[str]:
    return sorted({*catalog.teams, catalog.defaults.team})


def render_alertmanager(catalog: Catalog, settings: RuleSettings) -> str:
    s = settings
    wait, interval = prom_duration(s.group_wait), prom_duration(s.group_interval)
    repeat = prom_duration(s.repeat_interval)
    head = comment(
        f"{GENERATED}\n\n"
        "Every notification goes to one receiver, the impactwatch router, which posts one Slack "
        "message per incident in the owning team's channel, updates it in place, escalates it "
        "by the team's steps and resolves it in its thread. Routing to channels happens in the "
        "router (from the catalog), so this file only groups and times.\n\n"
        "An incident is one data product, pipeline or platform component of one team: alerts "
        f"are grouped by {', '.join(GROUP_BY)}, so a pipeline that runs long, then misses its "
        "deadline, is one notification group. A critical silences the warning of the same "
        "alert (inhibit_rules), so an escalation reads as one message that got worse.\n\n"
        "Timing, from a breach to the router (bench/bench_alert_latency.py measures it):\n"
        f"- Prometheus evaluates every {prom_duration(s.evaluation_interval)} and holds a "
        f"freshness breach for {prom_duration(s.freshness_for)} (for:) before it fires;\n"
        f"- group_wait {wait}: after an incident's first alert, wait this long so alerts firing "
        "together (a product and the pipeline behind it) arrive as one notification;\n"
        f"- group_interval {interval}: an incident already notified is re-sent at most this "
        "often when it changes (new alert, escalation to critical, resolution), so the router "
        f"learns of a resolution within {interval};\n"
        f"- repeat_interval {repeat}: an unchanged incident is re-sent this often. The router "
        "dedupes and escalates on its own clock, so this only heals a notification it missed.\n"
        "Worst case from breach to router for a stale data product: evaluation interval + for: "
        "+ group_wait."
    )
    routes = []
    for team in _teams(catalog):
        where = catalog.teams[team].slack_channel if team in catalog.teams else "defaults"
        routes.append(
            f"    # {team}: the router posts to {where}\n"
            f"    - receiver: {RECEIVER}\n"
            f"      matchers: [{_sq(f'{TEAM}={_q(team)}')}]\n"
        )
    out_of_band = _sq(f"{ALERTNAME}=~{_q('|'.join(OUT_OF_BAND))}")
    body = f"""route:
  receiver: {RECEIVER}
  group_by: {_list(GROUP_BY)}
  group_wait: {wait}
  group_interval: {interval}
  repeat_interval: {repeat}
  routes:
    # Alerts about the router's own delivery (Slack refusing it, messages stuck in its outbox)
    # cannot count on the router and Slack: they also go out of band, then on (continue) to
    # the platform team's route, so a channel that still works hears of them too.
    - receiver: {OUT_OF_BAND_RECEIVER}
      matchers: [{out_of_band}]
      continue: true
    # One child route per team of the catalog, all to the router: a place to tune a team's
    # timing without touching the others. Alerts of teams not listed fall back to the root.
{"".join(routes)}
receivers:
  - name: {RECEIVER}
    webhook_configs:
      - url: {_q(s.router_url)}
        send_resolved: true  # the router closes the Slack thread on resolve
        max_alerts: 0        # all alerts of an incident in one notification
        http_config:
          # The router checks this bearer token (its IMPACTWATCH_WEBHOOK_TOKEN). The token
          # stays in a file readable by Alertmanager only, never in this config.
          authorization:
            type: Bearer
            credentials_file: {_q(s.router_token_file)}
{_out_of_band_receiver(s)}
inhibit_rules:
  # A critical silences the warning of the same incident: same alert name, team, data
  # product or pipeline, component and pool (a label missing on both counts as equal).
  - source_matchers: [{_sq(f"{SEVERITY}={_q(CRITICAL)}")}]
    target_matchers: [{_sq(f"{SEVERITY}={_q(WARNING)}")}]
    equal: {_list(INHIBIT_EQUAL)}
"""
    return head + body


def _out_of_band_receiver(s: RuleSettings) -> str:
    """Email (a local MTA by default) and/or a webhook: paths that do not go through Slack."""
    text = f"  - name: {OUT_OF_BAND_RECEIVER}\n"
    if s.out_of_band_email:
        text += (
            "    email_configs:\n"
            f"      - to: {_q(s.out_of_band_email)}\n"
            f"        from: {_q(s.smtp_from)}\n"
            f"        smarthost: {_q(s.smtp_smarthost)}\n"
            f"        require_tls: {'true' if s.smtp_require_tls else 'false'}\n"
            "        send_resolved: true\n"
        )
    if s.out_of_band_webhook_url:
        text += (
            "    webhook_configs:\n"
            f"      - url: {_q(s.out_of_band_webhook_url)}\n"
            "        send_resolved: true\n"
        )
    return text
