"""The demo's tables: what a stakeholder and an on-call engineer read off the metrics."""

from __future__ import annotations

import urllib.request
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from impactwatch.catalog.durations import format_duration
from impactwatch.catalog.model import Catalog
from impactwatch.contract import metrics as c
from impactwatch.demo.scenario import RootCause

Samples = dict[str, list[tuple[dict[str, str], float]]]


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read().decode()
    samples: Samples = defaultdict(list)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[s.name].append((s.labels, s.value))
    return samples


def _ago(seconds: float) -> str:
    return f"{format_duration(seconds)} ago" if seconds >= 1 else "just now"


def _money(amount: float, currency: str) -> str:
    """Cents when there are cents to show; tiny amounts (a few seconds of one CPU) in full."""
    return f"{amount:,.2f} {currency}" if amount >= 0.01 else f"{amount:.6f} {currency}"


def table(title: str, header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)
    ]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    out = [f"\n{title}", line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out)


def summarize(samples: Samples, catalog: Catalog, now: float) -> str:
    """What a stakeholder and an on-call engineer would read off the metrics."""
    by = lambda name, key: {labels[key]: v for labels, v in samples.get(name, [])}  # noqa: E731
    updated = by(c.DATASET_LAST_UPDATED.name, "dataset")
    limits = by(c.DATASET_FRESHNESS_SLA.name, "dataset")
    rows = []
    for name, ds in sorted(catalog.datasets.items(), key=lambda kv: kv[1].tier):
        last, limit = updated.get(name), limits.get(name)
        if last is None:
            status, age = "no update seen", "-"
        else:
            age_s = now - last
            status = "fresh" if limit is None or age_s <= limit else "STALE"
            age = _ago(age_s)
        shown_limit = format_duration(limit) if limit else "-"
        rows.append((ds.title, catalog.team_of_dataset(name), ds.tier, age, shown_limit, status))
    out = [
        table(
            "Data products", ("data product", "owner", "tier", "updated", "limit", "status"), rows
        )
    ]

    runs: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for labels, v in samples.get(c.DAG_RUN_DURATION.series("count"), []):
        runs[labels["dag_id"]][labels["state"]] += v
    for labels, v in samples.get(c.DAG_RUN_DURATION.series("sum"), []):
        runs[labels["dag_id"]]["seconds"] += v
    for labels, v in samples.get(c.DAG_RUN_COST.series("sum"), []):
        runs[labels["dag_id"]]["cost"] += v
    currency = catalog.cost.currency
    rows = []
    for dag_id, r in sorted(runs.items()):
        total = r["success"] + r["failed"]
        avg = r["seconds"] / total if total else 0.0
        rows.append(
            (
                dag_id,
                catalog.team_of_pipeline(dag_id),
                f"{r['success']:.0f}",
                f"{r['failed']:.0f}",
                f"{avg:.1f}s",
                _money(r["cost"], currency),
                _money(r["cost"] / total if total else 0.0, currency),
            )
        )
    header = ("pipeline", "team", "ok", "failed", "avg duration", "cost", "per run")
    out.append(table("Pipeline runs", header, rows))

    rows = [
        (
            labels["kind"],
            labels["severity"],
            labels["team"],
            labels["dataset"] or labels["dag_id"],
            f"{v:.0f}",
        )
        for labels, v in samples.get(c.SLA_BREACHES.name, [])
    ]
    out.append(
        table("SLA breaches counted", ("kind", "severity", "team", "what", "count"), sorted(rows))
    )

    rows = [
        (labels["pool"], labels["state"], f"{v:.0f}")
        for labels, v in samples.get(c.POOL_SLOTS.name, [])
    ]
    out.append(table("Pools", ("pool", "state", "slots"), rows))
    events = {
        (lb["source"], lb["outcome"]): v for lb, v in samples.get(c.COLLECTOR_EVENTS.name, [])
    }
    rows_read = sum(v for _, v in samples.get(c.COLLECTOR_ROWS_READ.name, []))
    out.append(
        f"\nCollector: {sum(events.values()):.0f} events stored "
        f"({', '.join(f'{s}/{o}: {v:.0f}' for (s, o), v in sorted(events.items()))}), "
        f"{rows_read:.0f} rows read from Airflow's DB."
    )
    return "\n".join(out)


_PREFIXES = ("Critical: ", "Warning: ", "Resolved: ", "Affected by an upstream problem: ",
             "Upstream problem over: ", "Merged: ")  # fmt: skip


def _headline(text: str) -> str:
    text = text.split(": ", 1)[1] if text.startswith("Escalation ") else text
    for prefix in _PREFIXES:
        if text.startswith(prefix):
            return text[len(prefix) :]
    return text


def top_level_by_incident(records: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The router's top-level posts (not thread replies, not updates), by incident id (the
    outbox key the record carries is `<incident>:<role>`; digests have none)."""
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        if r.get("method") != "chat.postMessage" or r.get("thread_ts"):
            continue
        incident = str(r.get("key") or "").split(":", 1)[0] or "(no incident)"
        out[incident].append(r)
    return dict(out)


def root_cause_check(
    records: Iterable[dict[str, Any]], causes: Sequence[RootCause]
) -> tuple[str, list[str]]:
    """A table of top-level messages per root cause of the story, and what broke its limits:
    more than one incident for a root cause, or more top-level messages than it may take."""
    by_incident = top_level_by_incident(records)
    found: dict[str, list[tuple[str, list[dict[str, Any]]]]] = defaultdict(list)
    for incident, posts in sorted(by_incident.items()):
        headline = _headline(str(posts[0].get("text", "")))
        cause = next((c.name for c in causes if any(m in headline for m in c.markers)), None)
        found[cause or f"other: {headline}"].append((incident, posts))
    rows, failures = [], []
    for cause in causes:
        incidents = found.pop(cause.name, [])
        count = sum(len(posts) for _i, posts in incidents)
        channels = sorted({str(p.get("channel")) for _i, posts in incidents for p in posts})
        ok = len(incidents) == 1 and count <= cause.max_top_level
        rows.append(
            (
                cause.name,
                str(len(incidents)),
                f"{count} (at most {cause.max_top_level})",
                ", ".join(channels),
                "ok" if ok else "FAILED",
            )
        )
        if not ok:
            failures.append(
                f"{cause.name}: {len(incidents)} incident(s), {count} top-level message(s); "
                f"expected 1 incident and at most {cause.max_top_level}"
            )
    for name, incidents in sorted(found.items()):
        count = sum(len(posts) for _i, posts in incidents)
        channels = sorted({str(p.get("channel")) for _i, posts in incidents for p in posts})
        rows.append((name, str(len(incidents)), str(count), ", ".join(channels), "-"))
    header = ("root cause", "incidents", "top-level messages", "channels", "check")
    return table("Slack top-level messages per root cause", header, rows), failures
