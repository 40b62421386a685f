"""`impactwatch cost`: the cost model's rates, and reconciliation with the AWS bill.

    impactwatch cost rates --catalog impact.yaml            # rates per pool and queue, derived how
    impactwatch cost reconcile --catalog impact.yaml --state-db URL --once   # print, exit
    impactwatch cost reconcile --catalog impact.yaml --state-db URL \\
        --listen 0.0.0.0:9466 --interval 6h                 # serve /metrics for Prometheus

`reconcile` reads AWS Cost Explorer (`ce:GetCostAndUsage`, grouped by the cost allocation tag
--tag-key) with boto3's usual credentials, prices the same UTC days from the collector's state
DB, and compares them per DAG. --days N averages N days ending --lag-days before today (Cost
Explorer's latest day is still an estimate). `rates` asks EC2 (`ec2:DescribeInstanceTypes`) for
instance types the catalog prices without vcpus/memory_gb, as the collector does at start.

Registered by `impactwatch.cli` (its PARTS); heavy imports stay inside the commands.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

DEFAULT_STATE_DB = "sqlite:///impactwatch-state.db"


def add_subcommand(subparsers: Any) -> None:
    cost = subparsers.add_parser(
        "cost",
        help="cost model rates; reconcile estimates with AWS Cost Explorer",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = cost.add_subparsers(dest="cost_command", required=True)
    rates = sub.add_parser("rates", help="the rates of each pool and queue, and how derived")
    rates.add_argument("--catalog", default=os.environ.get("IMPACTWATCH_CATALOG"))
    rates.add_argument("--no-ec2", action="store_true", help="do not ask EC2 for instance types")
    rates.set_defaults(func=cmd_rates)

    rec = sub.add_parser("reconcile", help="actual cost per DAG (Cost Explorer) vs the estimate")
    rec.add_argument("--catalog", default=os.environ.get("IMPACTWATCH_CATALOG"))
    rec.add_argument(
        "--state-db",
        default=os.environ.get("IMPACTWATCH_STATE_DB", DEFAULT_STATE_DB),
        help=f"the collector's state DB (default {DEFAULT_STATE_DB})",
    )
    rec.add_argument("--tag-key", default="airflow_dag_id", help="cost allocation tag (DAG id)")
    rec.add_argument("--metric", default="UnblendedCost", help="Cost Explorer metric")
    rec.add_argument("--days", type=int, default=1, help="days averaged (default 1)")
    rec.add_argument("--lag-days", type=int, default=1, help="last day = today - this (default 1)")
    rec.add_argument("--once", action="store_true", help="reconcile, print a table, exit")
    rec.add_argument("--listen", default="127.0.0.1:9466", help="HOST:PORT of /metrics")
    rec.add_argument("--interval", default="6h", help="between reconciliations (default 6h)")
    rec.set_defaults(func=cmd_reconcile)


def _catalog(path: str | None) -> Any:
    from impactwatch.catalog.cli import load_catalog_or_exit

    if not path:
        print("impactwatch cost: --catalog (or IMPACTWATCH_CATALOG) is required", file=sys.stderr)
        raise SystemExit(2)
    return load_catalog_or_exit(path)


def cmd_rates(args: argparse.Namespace) -> int:
    from impactwatch.collector.cost.instances import resolve_or_warn
    from impactwatch.collector.cost.report import rates_table

    catalog = _catalog(args.catalog)
    if not args.no_ec2:
        catalog = resolve_or_warn(catalog)
    print(rates_table(catalog))
    return 0


def cmd_reconcile(args: argparse.Namespace) -> int:
    import signal
    import threading

    from prometheus_client import CollectorRegistry, start_http_server

    from impactwatch.catalog.durations import DurationError, parse_duration
    from impactwatch.collector.cost.instances import resolve_or_warn
    from impactwatch.collector.cost.reconcile_job import ReconcileCollector, ReconcileJob
    from impactwatch.collector.cost.report import reconciliation_table
    from impactwatch.collector.state.schema import make_engine

    if args.days < 1 or args.lag_days < 0:
        print("impactwatch cost reconcile: --days >= 1 and --lag-days >= 0", file=sys.stderr)
        return 2
    try:
        interval = parse_duration(args.interval)
    except DurationError as exc:
        print(f"impactwatch cost reconcile: --interval: {exc}", file=sys.stderr)
        return 2
    catalog = resolve_or_warn(_catalog(args.catalog))
    try:
        engine = make_engine(args.state_db)
    except Exception as exc:  # a malformed URL; never echo it (it may hold a password)
        print(f"impactwatch cost reconcile: --state-db: {type(exc).__name__}", file=sys.stderr)
        return 2
    job = ReconcileJob(
        catalog,
        engine,
        tag_key=args.tag_key,
        metric=args.metric,
        days=args.days,
        lag_days=args.lag_days,
    )
    if args.once:
        result = job.run_once()
        engine.dispose()
        if result is None:
            return 1
        print(reconciliation_table(result, catalog.cost.currency))
        return 0
    host, _, port = args.listen.rpartition(":")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ReconcileCollector(job))
    try:
        server, _thread = start_http_server(int(port), addr=host or "127.0.0.1", registry=registry)
    except (OSError, ValueError) as exc:
        print(f"impactwatch cost reconcile: cannot listen on {args.listen}: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(f"cost reconcile serving http://{host}:{server.server_port}/metrics", file=sys.stderr)
    try:
        while not stop.is_set():
            job.run_once()
            stop.wait(interval)
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        engine.dispose()
    return 0
