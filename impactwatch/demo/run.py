"""The embedded-defaults demo: real Airflow DAG runs on SQLite, read by the collector.

Builds `<workdir>/airflow` (an Airflow 3 home with an SQLite metadata DB and the example
fintech DAGs), runs the standard scenario for real, points a collector with the example
catalog at that database, scrapes its own `/metrics` like Prometheus would, and prints what it
measured in business words.
"""

from __future__ import annotations

import logging
import shutil
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from impactwatch.collector import contract as c
from impactwatch.collector.catalog import Catalog
from impactwatch.collector.catalog_loader import load_catalog
from impactwatch.collector.durations import format_duration
from impactwatch.collector.http_app import CollectorApp, serve
from impactwatch.collector.service import CollectorService
from impactwatch.collector.settings import CollectorSettings
from impactwatch.devtools.airflow_home import REPO_ROOT, AirflowHome, populate, reader_db_url

log = logging.getLogger("impactwatch.demo")
Samples = dict[str, list[tuple[dict[str, str], float]]]


def _scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read().decode()
    samples: Samples = defaultdict(list)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[s.name].append((s.labels, s.value))
    return samples


def _ago(seconds: float) -> str:
    return f"{format_duration(seconds)} ago" if seconds >= 1 else "just now"


def _table(title: str, header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
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
        _table(
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
                f"{r['cost']:.6f} {currency}",
            )
        )
    header = ("pipeline", "team", "ok", "failed", "avg duration", "cost")
    out.append(_table("Pipeline runs", header, rows))

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
        _table("SLA breaches counted", ("kind", "severity", "team", "what", "count"), sorted(rows))
    )

    rows = [
        (labels["pool"], labels["state"], f"{v:.0f}")
        for labels, v in samples.get(c.POOL_SLOTS.name, [])
    ]
    out.append(_table("Pools", ("pool", "state", "slots"), rows))
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


def run_demo(workdir: str = ".demo", serve_seconds: float = 0) -> int:
    work = Path(workdir).resolve()
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    home = AirflowHome(home=work / "airflow", db_url=f"sqlite:///{work / 'airflow' / 'airflow.db'}")
    print(
        f"1/3  running the example fintech DAGs for real in Airflow ({home.home}) ...", flush=True
    )
    started = time.monotonic()
    results = populate(home)
    for r in results:
        print(f"       {r.dag_id:<26} {r.state}")
    print(f"     {len(results)} runs in {time.monotonic() - started:.0f}s", flush=True)

    catalog_path = REPO_ROOT / "examples" / "catalog.yaml"
    settings = CollectorSettings(
        catalog=str(catalog_path),
        airflow_db=reader_db_url(home.db_url),
        state_db=f"sqlite:///{work / 'impactwatch-state.db'}",
        backfill_days=3,
    )
    print("2/3  collector: reading Airflow's metadata DB ...", flush=True)
    service = CollectorService(settings, load_catalog(catalog_path))
    cycles = 0
    while (result := service.poll_once()) is not None and not result.caught_up:
        cycles += 1
    if result is None:
        print("     the collector could not read Airflow's database; see the log above")
        return 1
    server, _ = serve(CollectorApp(service, None, settings.max_body_bytes), "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.server_port}/metrics"
    try:
        samples = _scrape(url)
        print(f"3/3  what impactwatch measured (scraped from {url}):")
        print(summarize(samples, service.state.catalog, time.time()))
        if serve_seconds > 0:
            print(f"\nserving {url} for {serve_seconds:.0f}s (Ctrl-C to stop)", flush=True)
            deadline = time.monotonic() + serve_seconds
            while time.monotonic() < deadline:
                service.poll_once()
                time.sleep(min(settings.poll_interval, max(deadline - time.monotonic(), 0)))
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        service.close()
    print("\nNext: `make test`, or run the collector against your own Airflow (see README).")
    return 0
