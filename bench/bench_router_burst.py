"""Router burst benchmark: 5,000 Alertmanager notifications at once against a Slack that allows
one message per second per channel (HTTP 429 with Retry-After beyond that).

The router runs as deployed (`impactwatch router`, its own process, SQLite state DB by default
or PostgreSQL with `--postgres`); the Slack stand-in (tests/support/slack_standin.py)
rate-limits chat.postMessage and chat.update per channel. 50 data products of 5 teams (one
channel each) get 100 notifications each, every one a real change (a new description value; a
second alert that comes and goes; at the end half of them resolve), sent by 8 concurrent
clients as fast as the router answers. Reported: webhook latency at the client, Slack calls by
outcome, messages posted/edited, time until the outbox is empty, and a check of every Slack
message against the last notification its data product got: lost (stale or missing) and
duplicated (two Slack messages for one router message).

    .venv/bin/python bench/bench_router_burst.py                 # 5,000 notifications
    .venv/bin/python bench/bench_router_burst.py --notifications 1000   # a quick run
    .venv/bin/python bench/bench_router_burst.py --postgres --baseline a4ce218  # before/after

With `--baseline REF` the same bursts also run against the router as of git commit REF (its
`impactwatch` package unpacked with `git archive`), in the same run, so the table shows before
and after side by side; the targets are checked on the current code only.
"""

from __future__ import annotations

import argparse
import json
import queue
import shutil
import sys
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import report
from bench_router_common import ROOT, RouterProcess, checkout, dumps, percentile, slack_calls

from tests.support.slack_standin import SlackStandIn

TEAMS = 5


def catalog(datasets: int) -> dict[str, Any]:
    return {
        "teams": {f"team_{t}": {"slack_channel": f"#team-{t}"} for t in range(TEAMS)},
        "datasets": {
            f"ds_{d:02d}": {"team": f"team_{d % TEAMS}", "freshness": "1h"} for d in range(datasets)
        },
        "defaults": {"team": "team_0"},
    }


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def notification(i: int, datasets: int, rounds: int, t0: float) -> tuple[str, bytes, str]:
    """(dataset, body, what Slack must finally say for it if this is its last notification)."""
    d, r = i % datasets, i // datasets
    name = f"ds_{d:02d}"
    last = r == rounds - 1
    resolved = last and d % 2 == 0
    labels = {"alertname": "DataProductStale", "severity": "warning", "kind": "freshness",
              "team": f"team_{d % TEAMS}", "dataset": name}  # fmt: skip
    alerts = [_alert(labels, f"value {i}", t0, resolved)]
    extra = {**labels, "alertname": "DataProductLate", "kind": "deadline"}
    if r % 5 == 4 and not last:
        alerts.append(_alert(extra, "late", t0 + r, False))
    elif r % 5 == 0 and r > 0:
        alerts.append(_alert(extra, "late", t0 + r - 1, True))
    body = {
        "version": "4", "groupKey": f'{{}}:{{dataset="{name}"}}', "truncatedAlerts": 0,
        "status": "resolved" if resolved else "firing", "receiver": "impactwatch-router",
        "groupLabels": {"dataset": name}, "commonLabels": labels, "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093", "alerts": alerts,
    }  # fmt: skip
    return name, dumps(body), ("Resolved" if resolved else f"value {i}")


def _alert(labels: dict[str, str], value: str, starts: float, resolved: bool) -> dict[str, Any]:
    return {
        "status": "resolved" if resolved else "firing",
        "labels": labels,
        "annotations": {"summary": "stale", "description": value},
        "startsAt": iso(starts),
        "endsAt": iso(time.time()) if resolved else "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph",
        "fingerprint": uuid.uuid5(uuid.NAMESPACE_OID, json.dumps(labels, sort_keys=True)).hex[:16],
    }


def run(args: argparse.Namespace, interval: float, code: Path | None = None) -> dict[str, Any]:
    """One burst against a fresh router whose own pacing is `interval` s per channel (the
    router's code from `code` when given: a baseline)."""
    rounds = args.notifications // args.datasets
    total = rounds * args.datasets
    slack = SlackStandIn(channel_interval=1.0)
    state_db, pg_name = None, None
    if args.postgres:
        from tests.support.postgres import create_database, postgres_server

        pg_name = f"impactwatch_bench_router_{uuid.uuid4().hex[:8]}"
        state_db = create_database(postgres_server(), pg_name).replace(
            "postgresql://", "postgresql+psycopg://"
        )
    router = RouterProcess(
        catalog(args.datasets),
        slack.url,
        slack.token,
        state_db,
        code,
        channel_interval=str(interval),
    )
    try:
        t0 = time.time() - 600
        work: queue.Queue[int] = queue.Queue()
        for i in range(total):
            work.put(i)
        bodies = [notification(i, args.datasets, rounds, t0) for i in range(total)]
        final = {name: expect for name, _body, expect in bodies}
        latencies: list[float] = []
        statuses: Counter[int] = Counter()
        lock = threading.Lock()

        def client() -> None:
            while True:
                try:
                    i = work.get_nowait()
                except queue.Empty:
                    return
                status, took = router.post(bodies[i][1])
                with lock:
                    latencies.append(took)
                    statuses[status] += 1

        began = time.monotonic()
        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        burst = time.monotonic() - began
        drain = router.wait_drained(quiet=2.0)
        calls = slack_calls(router.metrics())
        # -- every Slack message against what its data product last got --------------------
        posts = slack.posts()
        per_key = Counter((m.metadata or {}).get("event_payload", {}).get("message") for m in posts)
        top = [m for m in posts if m.thread_ts is None]
        lost = 0
        for name, expect in final.items():
            mine = [m for m in top if f"Ds {name[3:]} —" in m.text]
            shown = json.dumps([mine[0].text, mine[0].blocks]) if len(mine) == 1 else ""
            lost += expect not in shown
        return {
            "total": total,
            "ok": statuses[200],
            "burst": burst,
            "p50": percentile(latencies, 50),
            "p99": percentile(latencies, 99),
            "max": max(latencies),
            "top": len(top),
            "replies": len(posts) - len(top),
            "edits": len([c for c in slack.calls("chat.update") if c.status == 200]),
            "ok_calls": sum(v for (_m, o), v in calls.items() if o == "ok"),
            "429": sum(v for (_m, o), v in calls.items() if o == "rate_limited"),
            "drain": drain,
            "lost": lost,
            "duplicated": sum(n - 1 for n in per_key.values() if n > 1),
        }
    finally:
        router.stop()
        slack.stop()
        if pg_name:
            from tests.support.postgres import drop_database, postgres_server

            drop_database(postgres_server(), pg_name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--notifications", type=int, default=5000)
    parser.add_argument("--datasets", type=int, default=50)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--postgres", action="store_true", help="state DB on 127.0.0.1:5432")
    parser.add_argument(
        "--baseline", metavar="GIT_REF", help="also run the router as of this commit (before)"
    )
    args = parser.parse_args()
    modes = {"router paces 1/s/channel": 1.0, "Slack's 429s only": 0.0}
    code = checkout(args.baseline) if args.baseline else None
    shown: dict[str, dict[str, Any]] = {}  # before and after of a mode run back to back
    runs: dict[str, dict[str, Any]] = {}
    try:
        for label, interval in modes.items():
            if code is not None:
                shown[f"{label}, before ({args.baseline})"] = run(args, interval, code)
            shown[label] = runs[label] = run(args, interval)
    finally:
        if code is not None:
            shutil.rmtree(code, ignore_errors=True)
    r = list(shown.values())
    figures = [
        ("notifications answered 200", lambda x: f"{x['ok']:,} of {x['total']:,}"),
        ("burst duration", lambda x: f"{x['burst']:.1f} s ({x['total'] / x['burst']:,.0f}/s)"),
        (
            "webhook p50 / p99 / max",
            lambda x: f"{report.ms(x['p50'])} / {report.ms(x['p99'])} / {report.ms(x['max'])}",
        ),
        ("top-level messages posted", lambda x: str(x["top"])),
        ("thread replies posted", lambda x: str(x["replies"])),
        ("chat.update edits", lambda x: str(x["edits"])),
        ("notifications per edit (coalescing)", lambda x: f"{x['total'] / max(x['edits'], 1):.0f}"),
        ("Slack calls ok / HTTP 429", lambda x: f"{x['ok_calls']:,.0f} / {x['429']:,.0f}"),
        ("time to drain after the burst", lambda x: f"{x['drain']:.1f} s"),
        ("lost (missing or stale in Slack)", lambda x: str(x["lost"])),
        ("duplicated Slack messages", lambda x: str(x["duplicated"])),
    ]
    db = "PostgreSQL" if args.postgres else "SQLite"
    print(
        report.table(
            f"Burst: {r[0]['total']:,} notifications, {args.datasets} data products, {TEAMS} "
            f"channels, Slack stand-in at 1 message/s per channel, {db} state DB",
            ("figure", *shown),
            [(name, *(f(x) for x in r)) for name, f in figures],
        )
    )
    verdicts = report.Verdicts()
    for label, x in runs.items():
        verdicts.add(f"{label}: lost", str(x["lost"]), "0", x["lost"] == 0)
        verdicts.add(f"{label}: duplicated", str(x["duplicated"]), "0", x["duplicated"] == 0)
        verdicts.add(f"{label}: webhook p99", report.ms(x["p99"]), "< 50 ms", x["p99"] < 0.05)
        verdicts.add(f"{label}: drained", f"{x['drain']:.1f} s", "finite", x["drain"] < 1e9)
    print()
    print(verdicts.render())
    ok = all(x["lost"] == 0 and x["duplicated"] == 0 and x["p99"] < 0.05 for x in runs.values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
