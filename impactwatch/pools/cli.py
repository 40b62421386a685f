"""`impactwatch pools`: pool sizes by time window from measured usage, and an opt-in apply.

    impactwatch pools advise --catalog impact.yaml --state-db URL [--airflow-api URL]
    impactwatch pools advise ... --json                      # the advice for scripts
    impactwatch pools advise ... --listen 127.0.0.1:9467 --interval 1h   # serve /metrics
    impactwatch pools apply --catalog impact.yaml --state-db URL --airflow-api URL   # dry run
    impactwatch pools apply ... --yes [--loop 15m]          # set the current window's sizes
    impactwatch pools apply ... --yes --loop 15m --listen 127.0.0.1:9468   # counts as /metrics

The Airflow API's credentials come from the environment: IMPACTWATCH_AIRFLOW_API_TOKEN (a
bearer token), or IMPACTWATCH_AIRFLOW_API_USERNAME and IMPACTWATCH_AIRFLOW_API_PASSWORD
(exchanged at /auth/token, Airflow's simple auth manager). Exit codes: 0 done, 1 a pool was
refused or failed, 2 bad arguments or nothing could be read.

Registered by `impactwatch.cli` (its PARTS); heavy imports stay inside the commands.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

DEFAULT_STATE_DB = "sqlite:///impactwatch-state.db"


def add_subcommand(subparsers: Any) -> None:
    pools = subparsers.add_parser(
        "pools",
        help="pool sizes by time window from measured usage; apply them through Airflow's API",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = pools.add_subparsers(dest="pools_command", required=True)
    advise = sub.add_parser("advise", help="print the advised sizes, reasons and effects")
    _common(advise)
    advise.add_argument("--json", action="store_true", help="print the advice as JSON")
    advise.add_argument("--listen", help="HOST:PORT: serve the advice as /metrics, recompute")
    advise.add_argument("--interval", default="1h", help="with --listen: between advices (1h)")
    advise.set_defaults(func=cmd_advise)
    apply = sub.add_parser("apply", help="set the current window's sizes (dry run by default)")
    _common(apply)
    apply.add_argument("--yes", action="store_true", help="change the pools (default: dry run)")
    apply.add_argument("--loop", help="apply again every INTERVAL (e.g. 15m) until stopped")
    apply.add_argument("--listen", help="with --loop, HOST:PORT: serve what apply did as /metrics")
    apply.set_defaults(func=cmd_apply)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--catalog", default=os.environ.get("IMPACTWATCH_CATALOG"))
    p.add_argument(
        "--state-db",
        default=os.environ.get("IMPACTWATCH_STATE_DB", DEFAULT_STATE_DB),
        help=f"the collector's state DB (default {DEFAULT_STATE_DB})",
    )
    p.add_argument(
        "--airflow-api",
        default=os.environ.get("IMPACTWATCH_AIRFLOW_API"),
        help="Airflow's API server, e.g. http://localhost:8080 (configured sizes; apply)",
    )
    p.add_argument("--weeks", type=float, default=4.0, help="history used (default 4)")
    p.add_argument("--until", help="end of the history, ISO 8601 (default now; UTC if no zone)")
    p.add_argument("--tz", default="UTC", help="time zone of the windows (default UTC)")
    p.add_argument("--windows", type=int, default=4, help="most windows per kind of day (4)")
    p.add_argument("--pool", action="append", help="only this pool (repeatable)")
    p.add_argument(
        "--static",
        action="append",
        metavar="POOL=SLOTS",
        help="compare with this static size instead of Airflow's current one (repeatable)",
    )


def _fail(command: str, message: str) -> int:
    print(f"impactwatch pools {command}: {message}", file=sys.stderr)
    return 2


def _setup(args: argparse.Namespace, command: str) -> tuple[Any, Any] | int:
    """The advice job and the Airflow API client (None without --airflow-api); or an exit code."""
    import time
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfoNotFoundError

    from impactwatch.catalog.cli import load_catalog_or_exit
    from impactwatch.collector.state.schema import make_engine
    from impactwatch.pools.advice import AdviceSettings
    from impactwatch.pools.airflow_api import AirflowApi, AirflowApiError
    from impactwatch.pools.job import AdviceJob
    from impactwatch.pools.usage import HourOfWeek

    if not args.catalog:
        return _fail(command, "--catalog (or IMPACTWATCH_CATALOG) is required")
    if not 0 < args.weeks <= 52:
        return _fail(command, f"--weeks {args.weeks}: give 0 < weeks <= 52")
    static: dict[str, int] = {}
    for item in args.static or ():
        name, eq, slots = item.partition("=")
        if not eq or not name or not slots.isdigit() or int(slots) < 1:
            return _fail(command, f"--static {item!r}: write POOL=SLOTS, e.g. heavy_etl=4")
        static[name] = int(slots)
    try:
        hours = HourOfWeek(args.tz)
    except (ZoneInfoNotFoundError, ValueError):
        return _fail(command, f"--tz {args.tz!r}: not a time zone; e.g. UTC, Europe/London")
    try:
        settings = AdviceSettings(max_windows=args.windows)
    except ValueError as exc:
        return _fail(command, f"--windows: {exc}")
    clock = time.time
    if args.until:
        try:
            end = datetime.fromisoformat(args.until)
        except ValueError:
            return _fail(command, f"--until {args.until!r}: write ISO 8601, e.g. 2026-02-02T00:00")
        end = end if end.tzinfo else end.replace(tzinfo=UTC)
        clock = end.timestamp
    catalog = load_catalog_or_exit(args.catalog)
    try:
        engine = make_engine(args.state_db)
    except Exception as exc:  # a malformed URL; never echo it (it may hold a password)
        return _fail(command, f"--state-db: {type(exc).__name__}")
    api = None
    if args.airflow_api:
        try:
            api = AirflowApi(
                args.airflow_api,
                token=os.environ.get("IMPACTWATCH_AIRFLOW_API_TOKEN"),
                username=os.environ.get("IMPACTWATCH_AIRFLOW_API_USERNAME"),
                password=os.environ.get("IMPACTWATCH_AIRFLOW_API_PASSWORD"),
            )
        except AirflowApiError as exc:
            return _fail(command, str(exc))
    job = AdviceJob(
        catalog,
        engine,
        hours=hours,
        settings=settings,
        weeks=args.weeks,
        api=api,
        static=static,
        pools=frozenset(args.pool) if args.pool else None,
        clock=clock,
    )
    return job, api


def cmd_advise(args: argparse.Namespace) -> int:
    from impactwatch.pools.job import AdviceError
    from impactwatch.pools.render import advice_json, advice_text

    setup = _setup(args, "advise")
    if isinstance(setup, int):
        return setup
    job, api = setup
    try:
        if args.listen:
            return _serve(args, job)
        try:
            advice = job.compute()
        except AdviceError as exc:
            return _fail("advise", str(exc))
        if args.json:
            print(json.dumps(advice_json(advice.pools, advice.since, advice.until, args.tz)))
        else:
            currency = job.catalog.cost.currency
            print(advice_text(advice.pools, advice.since, advice.until, args.tz, currency))
        return 0
    finally:
        job.engine.dispose()
        if api is not None:
            api.close()


def _serve(args: argparse.Namespace, job: Any) -> int:
    import signal
    import threading

    from prometheus_client import CollectorRegistry, start_http_server

    from impactwatch.catalog.durations import DurationError, parse_duration
    from impactwatch.pools.job import AdviceCollector

    try:
        interval = parse_duration(args.interval)
    except DurationError as exc:
        return _fail("advise", f"--interval: {exc}")
    host, _, port = args.listen.rpartition(":")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(AdviceCollector(job))
    try:
        server, _thread = start_http_server(int(port), addr=host or "127.0.0.1", registry=registry)
    except (OSError, ValueError) as exc:
        return _fail("advise", f"cannot listen on {args.listen}: {exc}")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(f"pool advice serving http://{host}:{server.server_port}/metrics", file=sys.stderr)
    try:
        while not stop.is_set():
            job.run_once()
            stop.wait(max(interval, 60.0))
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
    return 0


def cmd_apply(args: argparse.Namespace) -> int:
    import logging
    import time
    from collections import Counter

    from impactwatch.catalog.durations import DurationError, parse_duration
    from impactwatch.pools.apply import ApplyCounts, apply_advice
    from impactwatch.pools.job import AdviceError

    if not args.airflow_api:
        return _fail("apply", "--airflow-api (or IMPACTWATCH_AIRFLOW_API) is required")
    interval = None
    if args.loop:
        try:
            interval = max(parse_duration(args.loop), 60.0)
        except DurationError as exc:
            return _fail("apply", f"--loop: {exc}")
    if args.listen and interval is None:
        return _fail("apply", "--listen needs --loop (a one-shot apply reports by exit code)")
    setup = _setup(args, "apply")
    if isinstance(setup, int):
        return setup
    job, api = setup
    logging.getLogger("impactwatch.pools").setLevel(logging.INFO)
    counts = ApplyCounts()
    server = None
    if args.listen:
        from prometheus_client import CollectorRegistry, start_http_server

        host, _, port = args.listen.rpartition(":")
        registry = CollectorRegistry(auto_describe=False)
        registry.register(counts)
        try:
            server, _thread = start_http_server(
                int(port), addr=host or "127.0.0.1", registry=registry
            )
        except (OSError, ValueError) as exc:
            return _fail("apply", f"cannot listen on {args.listen}: {exc}")
    code = 0
    try:
        while True:
            try:
                advice = job.compute()
            except AdviceError as exc:
                print(f"impactwatch pools apply: {exc}", file=sys.stderr)
                code = 2
            else:
                now = time.time()  # the window of now, whatever --until says of the history
                changes = apply_advice(api, advice.pools, now, job.hours, dry_run=not args.yes)
                counts.add(changes)
                tally = Counter(ch.action for ch in changes)
                print("apply: " + ", ".join(f"{n} {a}" for a, n in sorted(tally.items())))
                code = 1 if any(c.action in ("refused", "failed") for c in changes) else 0
                for c in changes:
                    before = "?" if c.before is None else c.before
                    print(f"{c.pool}\t{c.action}\t{before} -> {c.target}\t{c.message}")
            if interval is None:
                return code
            time.sleep(interval)
    except KeyboardInterrupt:
        return code
    finally:
        if server is not None:
            server.shutdown()
        job.engine.dispose()
        api.close()
