"""Slow clients against the collector and the router, each started with the real CLI in its own
process (`impactwatch collector`, `impactwatch router`), reached over loopback only.

(a) 200 connections each send one byte per second of a request head, for at most the header
    deadline + 5 s; meanwhile GET /healthz and GET /metrics in turn every 150 ms on new
    connections. Figures: the probes' p50/p99/max (target < 100 ms, no probe failing) and when
    the server cut the slow connections, seconds after their first byte (target: all of them,
    at the documented deadline `header_timeout`, 10 s by default: by 12 s).
(b) 40 unauthenticated connections to the router's POST /slack/interactions, each announcing a
    4 MiB body (bad Slack signature) and sending all but its last byte as fast as the router
    reads, then holding the connection open for the rest of 8 s. Figure: the router's RSS
    growth, peak VmRSS (/proc/<pid>/status every 0.1 s) minus VmRSS before (target < 20 MB).
(c) The same with 900 connections each announcing a body just under the router's limit
    (64 KiB), which the router must read before it can check the signature: they share one
    byte budget (`interactions_inflight_bytes`), so RSS growth stays under 20 MB too.

With `--baseline <commit>` everything runs against that commit's `impactwatch` package too
(`git archive`, see bench_router_common.checkout), printed beside today's tree and the target.
Every loop is bounded; the whole run takes about 1 min per code version.

    .venv/bin/python bench/bench_slow_clients.py
    .venv/bin/python bench/bench_slow_clients.py --baseline 4478007
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import report
from bench_router_common import RouterProcess, checkout
from collector_process import CollectorProcess, rss_mb
from slow_clients import big_bodies, under_slow_clients

from tests.support.slack_standin import SlackStandIn

PROBE_LIMIT = 0.100
RSS_LIMIT_MB = 20.0
CATALOG = {
    "teams": {"team_0": {"slack_channel": "#team-0"}},
    "datasets": {"ds_0": {"team": "team_0", "freshness": "1h"}},
    "defaults": {"team": "team_0"},
}


def slow_phase(port: int, url: str, args: argparse.Namespace) -> dict[str, Any]:
    slow, probes = under_slow_clients(
        port, url, ["/healthz", "/metrics"], args.connections, args.deadline + 5
    )
    return {"slow": slow, "probes": probes}


def measure(code: Path | None, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="iw-bench-slow-") as tmp:
        work = Path(tmp)
        (work / "no-airflow.db").touch()
        collector = CollectorProcess(
            f"sqlite:///{work / 'no-airflow.db'}", f"sqlite:///{work / 'state.db'}", code=code
        )
        try:
            print("  collector: slow heads", file=sys.stderr, flush=True)
            out["collector"] = slow_phase(collector.port, collector.url, args)
        finally:
            collector.stop()
    slack = SlackStandIn(channel_interval=1.0)
    os.environ["SLACK_SIGNING_SECRET"] = "bench-signing-secret"  # buttons checked, not refused
    router = RouterProcess(CATALOG, slack.url, slack.token, None, code)
    try:
        print("  router: slow heads", file=sys.stderr, flush=True)
        out["router"] = slow_phase(router.port, router.url, args)
        time.sleep(1.0)
        pid = router.proc.pid
        before = rss_mb(pid)
        peak = [before]
        print("  router: 4 MiB bodies on /slack/interactions", file=sys.stderr, flush=True)
        bodies = big_bodies(
            router.port,
            "/slack/interactions",
            {
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Slack-Request-Timestamp": str(int(time.time())),
                "X-Slack-Signature": "v0=" + "0" * 64,
            },
            args.bodies,
            4 * 2**20,
            args.hold,
            lambda: peak.append(rss_mb(pid)),
        )
        out["rss"] = {"before": before, "peak": max(peak), "bodies": bodies}
        time.sleep(1.0)
        before = rss_mb(pid)
        peak = [before]
        print("  router: 64 KiB bodies on /slack/interactions", file=sys.stderr, flush=True)
        bodies = big_bodies(
            router.port,
            "/slack/interactions",
            {
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Slack-Request-Timestamp": str(int(time.time())),
                "X-Slack-Signature": "v0=" + "0" * 64,
            },
            args.small_bodies,
            65536,
            args.hold,
            lambda: peak.append(rss_mb(pid)),
        )
        out["rss_small"] = {"before": before, "peak": max(peak), "bodies": bodies}
    finally:
        router.stop()
        slack.stop()
    return out


def cut_text(slow: Any) -> str:
    if not slow.cut_after:
        return f"none of {slow.opened} cut"
    held = f", {slow.held} held" if slow.held else ""
    refused = f", {slow.refused} refused" if slow.refused else ""
    return (
        f"{len(slow.cut_after)} cut at {min(slow.cut_after):.1f}-{max(slow.cut_after):.1f} s"
        f"{held}{refused}"
    )


def probe_text(probes: Any) -> str:
    failed = sum(probes.failures.values())
    text = (
        f"p50 {report.ms(probes.p(50))}, p99 {report.ms(probes.p(99))}, "
        f"max {report.ms(probes.worst)}"
    )
    if failed:
        text += f", {failed} failed ({', '.join(sorted(probes.failures))})"
    return text


def render(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> str:
    variants = list(results)
    rows: list[list[object]] = []
    verdicts = report.Verdicts()
    deadline = args.deadline
    for service in ("collector", "router"):
        rows.append(
            [
                f"{service}: /healthz + /metrics every 150 ms under {args.connections} slow heads",
                *(probe_text(results[v][service]["probes"]) for v in variants),
                f"p99 and max < {report.ms(PROBE_LIMIT)}, none failed",
            ]
        )
        rows.append(
            [
                f"{service}: slow heads cut (s after first byte)",
                *(cut_text(results[v][service]["slow"]) for v in variants),
                f"all, at {deadline:g} s (header_timeout), by {deadline + 2:g} s",
            ]
        )
        now = results["current"][service]
        probes, slow = now["probes"], now["slow"]
        verdicts.add(
            f"{service}: probe max under slow heads",
            report.ms(probes.worst),
            f"< {report.ms(PROBE_LIMIT)}",
            probes.worst < PROBE_LIMIT and not probes.failures,
        )
        verdicts.add(
            f"{service}: slow heads cut",
            cut_text(slow),
            f"all by {deadline + 2:g} s",
            slow.held == 0
            and bool(slow.cut_after)
            and deadline - 1 <= min(slow.cut_after)
            and max(slow.cut_after) <= deadline + 2,
        )
    for key, what in (
        ("rss", f"{args.bodies} x 4 MiB"),
        ("rss_small", f"{args.small_bodies} x 64 KiB"),
    ):
        rss_row(results, variants, key, what, rows, verdicts)
    table = report.table(
        f"Slow clients, loopback, {os.cpu_count()} cores (same run, same machine)",
        ("figure", *variants, "target"),
        rows,
    )
    return "\n\n".join([table, verdicts.render()])


def rss_row(
    results: dict[str, dict[str, Any]],
    variants: list[str],
    key: str,
    what: str,
    rows: list[list[object]],
    verdicts: report.Verdicts,
) -> None:
    rss_cells = []
    for v in variants:
        r = results[v][key]
        answers = ", ".join(f"{n} {s}" for s, n in sorted(r["bodies"].statuses.items()))
        rss_cells.append(
            f"+{r['peak'] - r['before']:.1f} MB ({r['before']:.0f} -> {r['peak']:.0f} MB;"
            f" {r['bodies'].sent_mb:,.0f} MiB sent; {answers})"
        )
    rows.append(
        [
            f"router: RSS growth, {what} unauthenticated /slack/interactions",
            *rss_cells,
            f"< {RSS_LIMIT_MB:.0f} MB",
        ]
    )
    r = results["current"][key]
    verdicts.add(
        f"router: RSS growth under {what} bodies",
        f"{r['peak'] - r['before']:.1f} MB",
        f"< {RSS_LIMIT_MB:.0f} MB",
        r["peak"] - r["before"] < RSS_LIMIT_MB,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", metavar="COMMIT", help="also run that commit's code")
    parser.add_argument("--connections", type=int, default=200, help="slow heads")
    parser.add_argument(
        "--deadline", type=float, default=10.0, help="the documented header_timeout (s)"
    )
    parser.add_argument("--bodies", type=int, default=40, help="4 MiB bodies held open")
    parser.add_argument(
        "--small-bodies", type=int, default=900, help="64 KiB bodies held open (phase c)"
    )
    parser.add_argument("--hold", type=float, default=8.0, help="seconds the bodies are held")
    args = parser.parse_args(argv)
    results: dict[str, dict[str, Any]] = {}
    if args.baseline:
        baseline = checkout(args.baseline)
        try:
            print(f"baseline {args.baseline}", file=sys.stderr, flush=True)
            results[f"baseline {args.baseline}"] = measure(baseline, args)
        finally:
            shutil.rmtree(baseline, ignore_errors=True)
    print("current", file=sys.stderr, flush=True)
    results["current"] = measure(None, args)
    print(render(results, args))
    print(f"\nload average (1, 5, 15 min) at the end {os.getloadavg()} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
