"""Alert storm benchmark: one upstream failure, 40 downstream data products of 4 teams, through
real Alertmanagers: how many Slack messages the on-call people get.

The same alerts go to two real Alertmanagers (Debian package), both configured from the
alertmanager.yml `impactwatch rules` generates for the catalog (its group_by, routes and
inhibition; timers set to 1 s through the generator's settings so a run takes seconds): one
sends to the router (`impactwatch router`, its own process, Slack stand-in behind it), the other
has every receiver swapped for Alertmanager's own `slack_configs` (one per team's channel)
pointed at the stand-in's incoming-webhook URL (bench/generated_alertmanager.py). Two arrival
patterns: everything at once, and staggered (the failure first, then the downstream products
going stale in four waves, as freshness limits run out one after another). Then everything
resolves. Counted: top-level messages, thread replies and edits per team.

Two catalogs. "storm": every downstream product made by its own DAG, downstream of the failed
pipeline's product in the catalog. "bad day" (issue 15): the 40 products fed three ways, as
Airflow feeds them: by an Airflow Asset the failed pipeline writes (the catalog names only the
Asset; the alerts' `producers` annotation, as the generated rules render it from
impactwatch_dataset_producer, says which DAG and task write it, some inside a task group), by a
task of the failed pipeline named in the catalog, and by a DAG of their own downstream in the
catalog's lineage. Target: one top-level message per team incident (the owner's incident and one
"affected" message in each other team's channel).

    .venv/bin/python bench/bench_router_storm.py
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import report
from bench_router_common import TOKEN, RouterProcess, slack_calls
from generated_alertmanager import for_router, native_slack

from impactwatch.contract.alerts import CRITICAL_PIPELINE_FAILED, DATA_PRODUCT_STALE, PRODUCERS
from tests.support.alertmanager_router import RouterAlertmanager, am_alert
from tests.support.slack_standin import SlackStandIn

TEAMS = ("ingest", "risk", "finance", "reporting")
DOWNSTREAM = 40


FEEDS = ("asset", "task", "dag")  # bad day: how product d is fed, FEEDS[(d // 4) % 3]
TIMERS = {"group_wait": 1.0, "group_interval": 1.0}


def feed_of(d: int) -> str:
    return FEEDS[(d // 4) % len(FEEDS)]


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


def bad_day_catalog() -> dict[str, Any]:
    """The failed pipeline `ingest_events` feeds every product: via an Asset, a task, or the
    catalog's lineage (a DAG of the product's own, downstream of `raw_events`)."""
    out = catalog()
    for d in range(DOWNSTREAM):
        entry = out["datasets"][f"product_{d:02d}"]
        feed = feed_of(d)
        if feed == "asset":
            entry["produced_by"] = f"s3://lake/product_{d:02d}"
            del entry["upstream"]
        elif feed == "task":
            entry["produced_by"] = f"ingest_events.publish_{d:02d}"
            del entry["upstream"]
    return out


def writer_of(d: int) -> str:
    """What Airflow says writes product d (bad day): `dag_id/task_id`, as in the annotation."""
    if feed_of(d) == "asset":  # half in a task group, as Airflow names those tasks
        return f"ingest_events/publish.product_{d:02d}" if d % 2 else f"ingest_events/emit_{d:02d}"
    if feed_of(d) == "task":
        return f"ingest_events/publish_{d:02d}"
    return f"build_{d:02d}/"


def bad_day_producers(d: int) -> str:
    """The freshness alert's annotation: the product and every product upstream of it."""
    own = f"product_{d:02d}={writer_of(d)} "
    return own + ("raw_events=ingest_events/load " if feed_of(d) == "dag" else "")


def alerts(
    started: float, ends: float | None = None, bad_day: bool = False
) -> list[list[dict[str, Any]]]:
    """Waves: [failure + upstream stale], then the 40 downstream products in 4 waves."""
    made_by_ingest = " ".join(
        f"product_{d:02d}={writer_of(d)}" for d in range(DOWNSTREAM) if feed_of(d) != "dag"
    )
    notes: dict[str, str] = {}
    if bad_day:  # as the generated rules render them (alert_rules/promql.py)
        notes = {
            "ingest_events": f"raw_events=ingest_events/load {made_by_ingest} ",
            "raw_events": "raw_events=ingest_events/load ",
            **{f"product_{d:02d}": bad_day_producers(d) for d in range(DOWNSTREAM)},
        }

    def one(labels: dict[str, str]) -> dict[str, Any]:
        about = labels.get("dataset") or labels["dag_id"]
        annotations = {"summary": "storm", "runbook_url": "https://runbooks/x"}
        if about in notes:
            annotations[PRODUCERS] = notes[about]
        return am_alert(labels, annotations, starts=started, ends=ends)

    first = [
        one({"alertname": CRITICAL_PIPELINE_FAILED, "severity": "critical", "kind": "failure",
             "team": "ingest", "dag_id": "ingest_events"}),
        one({"alertname": DATA_PRODUCT_STALE, "severity": "critical", "kind": "freshness",
             "team": "ingest", "dataset": "raw_events"}),
    ]  # fmt: skip
    rest = [
        one({"alertname": DATA_PRODUCT_STALE, "severity": "warning", "kind": "freshness",
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


def scenario(name: str, gap: float, bad_day: bool = False) -> list[tuple[str, ...]]:
    slack = SlackStandIn(channel_interval=1.0)
    cat = bad_day_catalog() if bad_day else catalog()
    router = RouterProcess(cat, slack.url, slack.token)
    generated = for_router(cat, f"{router.url}/alertmanager", Path("/dev/null"), **TIMERS)
    to_router = RouterAlertmanager(
        lambda token_file: for_router(cat, f"{router.url}/alertmanager", token_file, **TIMERS),
        token=TOKEN,
    )
    channels = {t: f"#{t}-alerts" for t in TEAMS}
    to_slack = RouterAlertmanager(native_slack(generated, slack.webhook_url, channels))
    try:
        started = time.time() - 900
        for wave in alerts(started, bad_day=bad_day):
            for am in (to_router, to_slack):
                am.post(wave)
            time.sleep(gap)

        def activity() -> int:
            return len(slack.calls()) + len(slack.webhook_posts())

        settle(activity)
        firing = count(slack, router)
        groups = len(to_slack.groups())
        for wave in alerts(started, ends=time.time() - 1, bad_day=bad_day):
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
                    str(groups),
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
    storm = [*scenario("all at once", 0.0), *scenario("staggered, 4 waves 3 s apart", 3.0)]
    bad = [
        *scenario("bad day, all at once", 0.0, bad_day=True),
        *scenario("bad day, staggered 4 x 3 s", 3.0, bad_day=True),
    ]
    rows = [*storm, *bad]
    feeds = Counter(feed_of(d) for d in range(DOWNSTREAM))
    print(
        report.table(
            f"Alert storm: 1 upstream failure + {DOWNSTREAM} downstream data products of "
            f"{len(TEAMS)} teams, real Alertmanager 0.25, config generated by impactwatch rules "
            f"(bad day: products fed by an Asset {feeds['asset']}, a task of the failed "
            f"pipeline {feeds['task']}, a DAG downstream in the catalog {feeds['dag']})",
            (
                "arrival",
                "when",
                "Alertmanager slack_configs: messages (0.25: one per notification)",
                "Alertmanager: groups (0.32, edited in place: one message each)",
                "router: top-level messages",
                "router: thread replies",
                "router: edits",
                "router top-level per team",
            ),
            rows,
        )
    )
    worst = max(int(r[4]) for r in rows)
    verdicts = report.Verdicts()
    verdicts.add(
        "router top-level messages (4 team-incidents)", str(worst), "<= 4", worst <= len(TEAMS)
    )
    met = worst <= len(TEAMS)
    for row in bad:
        per_team = dict(pair.split(":") for pair in row[-1].split())
        ok = all(per_team[t] == "1" for t in TEAMS)
        met = met and ok
        verdicts.add(
            f"{row[0]}, {row[1]}: top-level messages per team incident (native: {row[2]})",
            row[-1],
            "1 each",
            ok,
        )
    print()
    print(verdicts.render())
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
