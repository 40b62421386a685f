"""Alert storm benchmark: one upstream failure, 40 downstream data products of 4 teams, through
real Alertmanagers: how many Slack messages the on-call people get.

The same alerts go to two real Alertmanagers (Debian package): one sends to the router
(`impactwatch router`, its own process, Slack stand-in behind it), the other uses Alertmanager's
own `slack_configs` (one route and channel per team) pointed at the stand-in's incoming-webhook
URL. Both group the way the generated config does (team, dataset, dag_id, component). Two
arrival patterns: everything at once, and staggered (the failure first, then the downstream
products going stale in four waves, as freshness limits run out one after another). Then
everything resolves. Counted: top-level messages, thread replies and edits per team.

    .venv/bin/python bench/bench_router_storm.py
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import report
from bench_router_common import TOKEN, RouterProcess, slack_calls

from tests.support.alertmanager_router import RouterAlertmanager, am_alert, slack_config
from tests.support.slack_standin import SlackStandIn

TEAMS = ("ingest", "risk", "finance", "reporting")
DOWNSTREAM = 40


def catalog() -> dict[str, Any]:
    datasets: dict[str, Any] = {
        "raw_events": {
            "title": "Raw events",
            "team": "ingest",
            "tier": "critical",
            "produced_by": "ingest_events.load",
            "freshness": "1h",
        }
    }
    for d in range(DOWNSTREAM):
        datasets[f"product_{d:02d}"] = {
            "title": f"Product {d:02d}",
            "team": TEAMS[d % 4],
            "produced_by": f"build_{d:02d}",
            "freshness": "2h",
            "upstream": ["raw_events"],
        }
    return {
        "teams": {t: {"slack_channel": f"#{t}-alerts"} for t in TEAMS},
        "datasets": datasets,
        "pipelines": {"ingest_events": {"team": "ingest", "tier": "critical"}},
        "defaults": {"team": "ingest"},
    }


def alerts(started: float, ends: float | None = None) -> list[list[dict[str, Any]]]:
    """Waves: [failure + upstream stale], then the 40 downstream products in 4 waves."""

    def one(labels: dict[str, str]) -> dict[str, Any]:
        return am_alert(labels, {"summary": "storm", "runbook_url": "https://runbooks/x"},
                        starts=started, ends=ends)  # fmt: skip

    first = [
        one({"alertname": "PipelineFailed", "severity": "critical", "kind": "failure",
             "team": "ingest", "dag_id": "ingest_events"}),
        one({"alertname": "DataProductStale", "severity": "critical", "kind": "freshness",
             "team": "ingest", "dataset": "raw_events"}),
    ]  # fmt: skip
    rest = [
        one({"alertname": "DataProductStale", "severity": "warning", "kind": "freshness",
             "team": TEAMS[d % 4], "dataset": f"product_{d:02d}"})
        for d in range(DOWNSTREAM)
    ]  # fmt: skip
    return [first, *(rest[w::4] for w in range(4))]


def settle(check: Callable[[], int], quiet: float = 6.0, timeout: float = 180.0) -> None:
    """Wait until `check()` has not changed for `quiet` seconds."""
    last, since, began = check(), time.monotonic(), time.monotonic()
    while time.monotonic() - began < timeout:
        time.sleep(0.5)
        now = check()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return


def scenario(name: str, gap: float) -> list[tuple[str, ...]]:
    slack = SlackStandIn(channel_interval=1.0)
    router = RouterProcess(catalog(), slack.url, slack.token)
    to_router = RouterAlertmanager.for_router(f"{router.url}/alertmanager", TOKEN)
    channels = {t: f"#{t}-alerts" for t in TEAMS}
    to_slack = RouterAlertmanager(slack_config(slack.webhook_url, channels))
    try:
        started = time.time() - 900
        for wave in alerts(started):
            for am in (to_router, to_slack):
                am.post(wave)
            time.sleep(gap)

        def activity() -> int:
            return len(slack.calls()) + len(slack.webhook_posts())

        settle(activity)
        firing = count(slack, router)
        for wave in alerts(started, ends=time.time() - 1):
            for am in (to_router, to_slack):
                am.post(wave)
        settle(activity)
        total = count(slack, router)
        rows = []
        for what, key in (("firing", firing), ("after resolve", total)):
            rows.append(
                (
                    name,
                    what,
                    str(key["am"]),
                    str(key["top"]),
                    str(key["replies"]),
                    str(key["updates"]),
                    " ".join(f"{t}:{key['per_team'][t]}" for t in TEAMS),
                )
            )
        return rows
    finally:
        to_router.stop()
        to_slack.stop()
        router.stop()
        slack.stop()


def count(slack: SlackStandIn, router: RouterProcess) -> dict[str, Any]:
    top = slack.top_level()
    per_team = Counter()
    for team in TEAMS:
        per_team[team] = sum(1 for m in top if m.channel == slack.channel_id(f"{team}-alerts"))
    calls = slack_calls(router.metrics())
    return {
        "am": len(slack.webhook_posts()),
        "top": len(top),
        "replies": len(slack.posts()) - len(top),
        "updates": int(calls.get(("chat.update", "ok"), 0)),
        "per_team": per_team,
    }


def main() -> int:
    rows = [*scenario("all at once", 0.0), *scenario("staggered, 4 waves 3 s apart", 3.0)]
    print(
        report.table(
            f"Alert storm: 1 upstream failure + {DOWNSTREAM} downstream data products of "
            f"{len(TEAMS)} teams, real Alertmanager 0.25",
            (
                "arrival",
                "when",
                "Alertmanager slack_configs: messages",
                "router: top-level messages",
                "router: thread replies",
                "router: edits",
                "router top-level per team",
            ),
            rows,
        )
    )
    worst = max(int(r[3]) for r in rows)
    verdicts = report.Verdicts()
    verdicts.add(
        "router top-level messages (4 team-incidents)", str(worst), "<= 4", worst <= len(TEAMS)
    )
    print()
    print(verdicts.render())
    return 0 if worst <= len(TEAMS) else 1


if __name__ == "__main__":
    sys.exit(main())
