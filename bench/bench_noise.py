"""Noise benchmark (issue 15, the article's figure: 50+ alerts a day down to 3-5): an ordinary
day of 100 DAGs replayed through the real generated rules, a real Alertmanager with the
generated config and the router; how many top-level Slack messages the day makes.

The day (seeded, deterministic): 70 hourly and 30 daily DAGs of 4 teams, each refreshing one
data product (every 10th through an Airflow Asset, the rest named by DAG in the catalog); the
daily products read hourly ones upstream. 3% of runs fail once: half are fixed by a retry (the
run succeeds, a few minutes later), half fail and the next run fixes them. The heavy pipeline
runs slow one night (1.6 x its usual 2 h; its limit is 2 x). Two real incidents with downstream
impact: a critical hourly pipeline fails from 10:05 until it is fixed at 13:30 (its
Asset-triggered consumers of two other teams stop with it), and a daily pipeline hangs at 02:00
until it is restarted at 08:30 (its consumer of another team is late with it).

1. Rules: the collector's series for the day (1 min resolution, as the metric contract names
   them) go through `promtool test rules` with the generated rule files (Prometheus' own rule
   evaluation: `for:`, templates, the `producers` annotation from impactwatch_dataset_producer),
   evaluated every 15 s as the groups are; every alert firing is read back minute by minute
   (promtool prints the firing alerts, labels and annotations, of a case that expects none).
2. Delivery: those alert episodes are replayed, 1 simulated minute = REPLAY_MINUTE real
   seconds, into two real Alertmanagers configured from the generated alertmanager.yml (group
   timers scaled by the same factor): one sends to the router (Slack stand-in behind it), the
   other has its receivers swapped for Alertmanager's own slack_configs (bench/
   generated_alertmanager.py). The router's escalation steps are not exercised (the catalog
   has none: they run on the router's real clock).

    .venv/bin/python bench/bench_noise.py
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import report
import yaml
from bench_router_common import TOKEN, RouterProcess
from generated_alertmanager import catalog_model, for_router, native_slack

from impactwatch.alert_rules.generate import generate
from impactwatch.alert_rules.promtool import find_promtool
from impactwatch.alert_rules.settings import RuleSettings
from impactwatch.contract import metrics as c
from tests.support.alertmanager_router import RouterAlertmanager, am_alert
from tests.support.slack_standin import SlackStandIn

TEAMS = ("ingest", "risk", "finance", "reporting")
MINUTES = 24 * 60
HOURLY, DAILY = 70, 30
REPLAY_MINUTE = 0.06  # real seconds per simulated minute (24 h in ~90 s)
SETTINGS = RuleSettings()  # the shipped timings: evaluation 15 s, for: 30 s / 60 s
INCIDENT_A = 3  # dag_03: critical hourly, fails 10:05 -> fixed 13:30
INCIDENT_B = 80  # dag_80: daily, hangs 02:00 -> restarted 08:30
HEAVY = 99
CRITICAL = {0, INCIDENT_A, 12, 33, 47}


def name(i: int) -> str:
    return f"dag_{i:02d}"


def ds(i: int) -> str:
    return f"ds_{i:02d}"


def team(i: int) -> str:
    return TEAMS[i % 4]


def consumers_of_a() -> list[int]:
    """Hourly DAGs triggered by dag_03's Asset: two other teams' products."""
    return [5, 6, 9]  # risk, finance, risk


def consumers_of_b() -> list[int]:
    return [91]  # reporting (i % 4 == 3), a daily mart on dag_80's product


def upstream_of(i: int) -> list[str]:
    if i in consumers_of_a():
        return [ds(INCIDENT_A)]
    if i in consumers_of_b():
        return [ds(INCIDENT_B)]
    if i >= HOURLY:
        return [ds(i - HOURLY), ds(i - HOURLY + 30)]
    return []


def usual_minutes(i: int) -> int:
    return 120 if i == HEAVY else (10 if i < HOURLY else 30)


def catalog() -> dict[str, Any]:
    datasets: dict[str, Any] = {}
    pipelines: dict[str, Any] = {}
    for i in range(HOURLY + DAILY):
        hourly = i < HOURLY
        entry: dict[str, Any] = {
            "title": f"Product {i:02d}",
            "team": team(i),
            "tier": "critical" if i in CRITICAL else "standard",
            "produced_by": f"s3://lake/{ds(i)}" if i % 10 == 7 else name(i),
            "freshness": "3h" if hourly else "26h",
        }
        if upstream_of(i):
            entry["upstream"] = upstream_of(i)
        datasets[ds(i)] = entry
        pipelines[name(i)] = {
            "team": team(i),
            "tier": "critical" if i in CRITICAL else "standard",
            "max_duration": f"{2 * usual_minutes(i)}m",
        }
    return {
        "teams": {t: {"slack_channel": f"#{t}-alerts"} for t in TEAMS},
        "datasets": datasets,
        "pipelines": pipelines,
        "defaults": {"team": "ingest"},
    }


# -- the day ------------------------------------------------------------------------------------
@dataclass
class Run:
    start: int  # minute of the day (may be negative: yesterday)
    end: int | None  # None: still running at the end of the day
    ok: bool


@dataclass
class Day:
    runs: dict[int, list[Run]] = field(default_factory=dict)
    failed_runs: int = 0  # runs that failed (the article's "alert on every failure")
    retried_tries: int = 0  # tries that failed and were retried
    total_runs: int = 0


def make_day(seed: int = 15) -> Day:
    rng = random.Random(seed)
    day = Day()
    for i in range(HOURLY + DAILY):
        runs: list[Run] = []
        hourly = i < HOURLY
        starts = (
            range(-120 + i % 60, MINUTES, 60) if hourly else [-MINUTES + 60 + i % 300, 60 + i % 300]
        )
        if i == HEAVY:
            starts = [-MINUTES + 60, 60]
        if i == INCIDENT_B:
            starts = [-MINUTES + 120, 120]
        for start in starts:
            length = usual_minutes(i) + rng.randint(-2, 3)
            ok = True
            if start >= 0:
                day.total_runs += 1
                if rng.random() < 0.03 and not (i == INCIDENT_A and 600 <= start < 810):
                    if hourly and rng.random() < 0.5:
                        ok = False  # fails; the next run fixes it
                        day.failed_runs += 1
                    else:
                        length += 5  # a try fails, the retry succeeds
                        day.retried_tries += 1
                if i == HEAVY and start == 60:
                    length = int(usual_minutes(i) * 1.6)
                if i == INCIDENT_A and 600 <= start < 810:
                    ok = False
                    day.failed_runs += 1
                if i == INCIDENT_B and start == 120:
                    runs.append(Run(start, 510, False))  # hangs; killed at 08:30
                    runs.append(Run(515, 545, True))  # restarted, succeeds
                    day.failed_runs += 1
                    continue
                if i in consumers_of_a() and 600 <= start < 810:
                    continue  # Asset-triggered: nothing to run on while dag_03 fails
                if i in consumers_of_b() and start < 545:
                    start = 550  # triggered by dag_80's product, late with it
            runs.append(Run(start, start + length, ok))
        if i == INCIDENT_A:
            runs.append(Run(810, 822, True))  # the fix: a manual rerun at 13:30
        if i in consumers_of_a():
            runs.append(Run(825, 836, True))  # triggered by the fix
        day.runs[i] = sorted(runs, key=lambda r: r.start)
    return day


def step_values(points: list[tuple[int, float]]) -> str:
    """promtool's expanding notation for a step function sampled each minute 0..MINUTES, from
    (minute, value) changes; `_` before the first change."""
    out: list[str] = []
    points = sorted(points)
    first = points[0][0] if points else MINUTES + 1
    if first > 0:
        out.append(f"_x{min(first, MINUTES + 1)}")
    for k, (minute, value) in enumerate(points):
        if minute > MINUTES:
            break
        nxt = points[k + 1][0] if k + 1 < len(points) else MINUTES + 1
        nxt = min(nxt, MINUTES + 1)
        start = max(minute, 0)
        if nxt > start:
            text = format(value, ".12g")
            out.append(f"{text}x{nxt - start - 1}" if nxt - start > 1 else text)
    return " ".join(out)


def input_series(day: Day) -> list[dict[str, str]]:
    def one(metric: Any, labels: dict[str, str], values: str) -> dict[str, str]:
        return one_series(metric.name, labels, values)

    cat = catalog()
    up = {"job": SETTINGS.collector_job, "instance": SETTINGS.collector_targets[0]}
    out = [one_series("up", up, f"1x{MINUTES}")]
    for i, runs in day.runs.items():
        dag = {"dag_id": name(i), "team": team(i), "job": "impactwatch-collector"}
        entry = cat["datasets"][ds(i)]
        dset = {"dataset": ds(i), "team": team(i), "tier": entry["tier"]}
        dset["job"] = "impactwatch-collector"
        success, failure, running = [], [], []
        for run in runs:
            if run.end is not None and run.end < -MINUTES:
                continue
            if run.end is not None:
                (success if run.ok else failure).append((max(run.end, 0), run.end * 60.0))
            running.append((run.start, run.end))
        last_success = success
        out.append(one(c.DAG_RUN_LAST_SUCCESS, dag, step_values(dedupe(last_success))))
        if failure:
            out.append(one(c.DAG_RUN_LAST_FAILURE, dag, step_values(dedupe(failure))))
        out.append(one(c.DATASET_LAST_UPDATED, dset, step_values(dedupe(last_success))))
        out.append(one(c.DAG_PAUSED, dag, f"0x{MINUTES}"))
        limit = 2 * usual_minutes(i) * 60
        out.append(one(c.DAG_RUN_MAX_DURATION, {**dag, "source": "catalog"}, f"{limit}x{MINUTES}"))
        sla = (3 if i < HOURLY else 26) * 3600
        out.append(one(c.DATASET_FRESHNESS_SLA, {**dset, "source": "catalog"}, f"{sla}x{MINUTES}"))
        out.append(one(c.DATASET_PRODUCER_PAUSED, dset, f"0x{MINUTES}"))
        writer = {"dataset": ds(i), "dag_id": name(i), "task_id": "publish" if i % 10 == 7 else ""}
        out.append(one(c.DATASET_PRODUCER, writer, f"1x{MINUTES}"))
        oldest = oldest_running(running)
        if oldest:
            out.append(one(c.DAG_RUN_OLDEST_RUNNING, dag, " ".join(oldest)))
    return out


def one_series(metric: str, labels: dict[str, str], values: str) -> dict[str, str]:
    inner = ", ".join(f"{k}={json.dumps(v)}" for k, v in labels.items())
    return {"series": f"{metric}{{{inner}}}", "values": values}


def dedupe(points: list[tuple[int, float]]) -> list[tuple[int, float]]:
    last: dict[int, float] = {}
    for minute, value in points:
        last[minute] = value
    return sorted(last.items())


def oldest_running(running: list[tuple[int, int | None]]) -> list[str]:
    """Per minute: the age (s) of the oldest run in flight, `_` when none (the collector exports
    the series only while a run is in flight)."""
    values = []
    any_running = False
    for minute in range(MINUTES + 1):
        ages = [minute - s for s, e in running if s <= minute and (e is None or minute < e)]
        if ages:
            any_running = True
            values.append(f"{max(ages) * 60}")
        else:
            values.append("_")
    return values if any_running else []


# -- rules through promtool ---------------------------------------------------------------------
_ALERT = re.compile(
    r"Labels:(\{.*?\})\s*\n\s*Annotations:(\{.*?\})\s*(?=\n\s*\d+:|\n\s*\]|$)", re.S
)
_PAIR = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')
_CASE = re.compile(r"alertname: (\w+), time: ([0-9hms]+),")


def parse_labels(text: str) -> dict[str, str]:
    return {k: json.loads(f'"{v}"') for k, v in _PAIR.findall(text)}


def go_minutes(text: str) -> int:
    total = 0
    for amount, unit in re.findall(r"(\d+)([hms])", text):
        total += int(amount) * {"h": 60, "m": 1, "s": 0}[unit]
    return total


def firing_by_minute(
    rule_files: list[Path], series: list[dict[str, str]], names: list[str], work: Path
) -> dict[int, list[tuple[dict[str, str], dict[str, str]]]]:
    cases = [
        {"eval_time": f"{m}m", "alertname": n, "exp_alerts": []}
        for m in range(1, MINUTES + 1)
        for n in names
    ]
    test = {
        "rule_files": [str(p) for p in rule_files],
        "evaluation_interval": f"{int(SETTINGS.evaluation_interval)}s",
        "tests": [{"interval": "1m", "input_series": series, "alert_rule_test": cases}],
    }
    path = work / "day.test.yml"
    path.write_text(yaml.safe_dump(test, sort_keys=False, width=10**6))
    done = subprocess.run(
        [find_promtool(), "test", "rules", str(path)], capture_output=True, text=True
    )
    text = done.stdout + done.stderr
    if "FAILED" not in text and done.returncode != 0:
        raise SystemExit(f"promtool: {text[-3000:]}")
    out: dict[int, list[tuple[dict[str, str], dict[str, str]]]] = {}
    chunks = re.split(r"\n\s*(?=alertname: )", text)
    for chunk in chunks:
        head = _CASE.match(chunk.strip())
        if not head:
            continue
        got = chunk.split("got:", 1)[1] if "got:" in chunk else ""
        for labels, notes in _ALERT.findall(got):
            out.setdefault(go_minutes(head[2]), []).append(
                (parse_labels(labels), parse_labels(notes))
            )
    return out


@dataclass
class Episode:
    labels: dict[str, str]
    annotations: dict[str, str]
    start: int
    end: int | None = None


def episodes(firing: dict[int, list[tuple[dict[str, str], dict[str, str]]]]) -> list[Episode]:
    open_: dict[str, Episode] = {}
    done: list[Episode] = []
    for minute in range(1, MINUTES + 1):
        now = {json.dumps(sorted(lb.items())): (lb, an) for lb, an in firing.get(minute, [])}
        for key, (lb, an) in now.items():
            if key not in open_:
                open_[key] = Episode(lb, an, minute)
            else:
                open_[key].annotations = an
        for key in [k for k in open_ if k not in now]:
            episode = open_.pop(key)
            episode.end = minute
            done.append(episode)
    done.extend(open_.values())
    return sorted(done, key=lambda e: (e.start, sorted(e.labels.items())))


# -- delivery -----------------------------------------------------------------------------------
def replay(eps: list[Episode], cat: dict[str, Any]) -> dict[str, Any]:
    slack = SlackStandIn(channel_interval=0.0)
    router = RouterProcess(cat, slack.url, slack.token)
    scale = REPLAY_MINUTE / 60  # real seconds per simulated second
    timers = {
        "group_wait": round(SETTINGS.group_wait * scale, 3),
        "group_interval": round(SETTINGS.group_interval * scale, 3),
    }
    url = f"{router.url}/alertmanager"
    generated = for_router(cat, url, Path("/dev/null"), **timers)
    to_router = RouterAlertmanager(
        lambda token_file: for_router(cat, url, token_file, **timers), token=TOKEN
    )
    channels = {t: f"#{t}-alerts" for t in TEAMS}
    to_slack = RouterAlertmanager(native_slack(generated, slack.webhook_url, channels))
    groups: set[str] = set()
    try:
        began = time.time()

        def at(minute: int) -> float:
            return began + minute * REPLAY_MINUTE

        events = sorted(
            [(e.start, 1, k) for k, e in enumerate(eps)]
            + [(e.end, 0, k) for k, e in enumerate(eps) if e.end is not None]
        )
        for minute, firing, k in events:
            wait = at(minute) - time.time()
            if wait > 0:
                time.sleep(wait)
            e = eps[k]
            alert = am_alert(
                e.labels,
                e.annotations,
                starts=at(e.start),
                ends=None if firing else time.time(),
            )
            for am in (to_router, to_slack):
                am.post([alert])
            if firing:
                groups.update(json.dumps(g["labels"], sort_keys=True) for g in to_slack.groups())
        time.sleep(max(3.0, 2 * SETTINGS.group_interval * scale))
        router.wait_drained(timeout=60, quiet=2.0)
        top = slack.top_level()
        cid = {slack.channel_id(f"{t}-alerts"): t for t in TEAMS}
        return {
            "native": len(slack.webhook_posts()),
            "native_groups": len(groups),
            "top": top,
            "per_team": Counter(cid.get(m.channel, m.channel) for m in top),
            "replies": len(slack.posts()) - len(top),
            "seconds": time.time() - began,
        }
    finally:
        to_router.stop()
        to_slack.stop()
        router.stop()
        slack.stop()


def main() -> int:
    day = make_day()
    cat = catalog()
    with tempfile.TemporaryDirectory(prefix="iw-bench-noise-") as tmp:
        work = Path(tmp)
        files = generate(catalog_model(cat), SETTINGS)
        rule_files = []
        for rel, text in files.items():
            if rel.startswith("rules/"):
                path = work / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
                rule_files.append(path)
        names = sorted(
            {
                r["alert"]
                for f in rule_files
                for g in yaml.safe_load(f.read_text())["groups"]
                for r in g["rules"]
                if "alert" in r
            }
        )
        began = time.perf_counter()
        firing = firing_by_minute(rule_files, input_series(day), names, work)
        rules_seconds = time.perf_counter() - began
    eps = episodes(firing)
    by_name = Counter(e.labels.get("alertname", "?") for e in eps)
    delivered = replay(eps, cat)
    top = delivered["top"]
    incident_a = any(name(INCIDENT_A) in m.text or ds(INCIDENT_A) in m.text for m in top)
    incident_b = any(name(INCIDENT_B) in m.text or ds(INCIDENT_B) in m.text for m in top)
    print(
        report.table(
            f"An ordinary day: {HOURLY} hourly + {DAILY} daily DAGs, 4 teams, "
            f"{day.total_runs} runs; through promtool (generated rules) "
            f"in {rules_seconds:.0f} s, then real Alertmanager 0.25 + router "
            f"(1 simulated minute = {REPLAY_MINUTE} s; replay {delivered['seconds']:.0f} s)",
            ("what", "count"),
            [
                (
                    "runs that failed (a failure alert on each: the article's 'before')",
                    str(day.failed_runs),
                ),
                ("tries that failed and were retried successfully", str(day.retried_tries)),
                ("alert episodes the generated rules fired", str(len(eps))),
                *((f"  {n}", str(k)) for n, k in sorted(by_name.items())),
                (
                    "Alertmanager slack_configs: messages (0.25, one per notification)",
                    str(delivered["native"]),
                ),
                (
                    "Alertmanager: alert groups (0.32 edits in place: one message each)",
                    str(delivered["native_groups"]),
                ),
                ("router: top-level Slack messages", str(len(top))),
                ("router: thread replies", str(delivered["replies"])),
                (
                    "router: top-level per channel",
                    " ".join(f"{k}:{v}" for k, v in sorted(delivered["per_team"].items())),
                ),
            ],
        )
    )
    print()
    for e in eps:
        end = f"{e.end // 60:02d}:{e.end % 60:02d}" if e.end is not None else "open"
        subject = e.labels.get("dataset") or e.labels.get("dag_id") or e.labels.get("component")
        print(
            f"  {e.start // 60:02d}:{e.start % 60:02d}-{end} {e.labels.get('alertname')} "
            f"{e.labels.get('severity')} {subject} ({e.labels.get('team')})"
        )
    for m in top:
        print(f"  top-level: {m.text[:140]!r}")
    verdicts = report.Verdicts()
    ok_count = len(top) <= 5
    verdicts.add("top-level Slack messages for the day", str(len(top)), "<= 5", ok_count)
    verdicts.add(
        "both real incidents among them",
        f"dag_03: {'yes' if incident_a else 'no'}, dag_80: {'yes' if incident_b else 'no'}",
        "both",
        incident_a and incident_b,
    )
    print()
    print(verdicts.render())
    return 0 if ok_count and incident_a and incident_b else 1


if __name__ == "__main__":
    sys.exit(main())
