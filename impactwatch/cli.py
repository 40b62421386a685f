"""The `impactwatch` command: catalog checks, the collector service, the demo."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

log = logging.getLogger("impactwatch")

# Modules that contribute a subcommand with `add_subcommand(subparsers)`.
PARTS = (
    "impactwatch.alert_rules.cli",
    "impactwatch.router.cli",
    "impactwatch.dashboards.cli",
    "impactwatch.collector.cost.cli",
    "impactwatch.pools.cli",
)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


def _progress_bar(label: str) -> Callable[[int, int], None]:
    """A tqdm bar on stderr for backfills, created on the first report."""
    from tqdm import tqdm

    bar: dict[str, Any] = {}

    def report(position: int, end: int) -> None:
        if "bar" not in bar:
            bar["start"] = position
            bar["bar"] = tqdm(total=max(end - position, 1), desc=label, unit="run", leave=False)
        current = bar["bar"]
        current.n = max(position - bar["start"], 0)
        current.refresh()
        if position >= end:
            current.close()

    return report


def cmd_catalog_check(args: argparse.Namespace) -> int:
    from impactwatch.catalog.cli import run_check

    return run_check(args.file, args.airflow_db)


def cmd_collector(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from impactwatch.catalog.cli import load_catalog_or_exit
    from impactwatch.collector.http_app import collector_app
    from impactwatch.collector.service import CollectorService
    from impactwatch.collector.settings import CollectorSettings
    from impactwatch.serving import Server

    overrides = {
        k: v
        for k, v in {
            "catalog": args.catalog,
            "airflow_db": args.airflow_db,
            "state_db": args.state_db,
            "listen": args.listen,
            "poll_interval": args.poll_interval,
            "backfill_days": args.backfill_days,
        }.items()
        if v is not None
    }
    try:
        settings = CollectorSettings(**overrides)
    except ValidationError as exc:
        for err in exc.errors():
            name = ".".join(str(p) for p in err["loc"])
            print(
                f"impactwatch collector: --{name.replace('_', '-')}: {err['msg']}", file=sys.stderr
            )
        return 2
    catalog = load_catalog_or_exit(settings.catalog)
    from impactwatch.collector.cost.instances import resolve_or_warn

    catalog = resolve_or_warn(catalog)  # EC2 shapes of priced instance types, if any lack them
    try:
        service = CollectorService(settings, catalog, progress=_progress_bar("backfill"))
        token = settings.intake_token()
    except Exception as exc:  # bad URL, unreadable token file, state DB refused
        from impactwatch.collector.service import describe_error

        print(f"impactwatch collector: cannot start: {describe_error(exc)}", file=sys.stderr)
        return 2
    if args.once:
        while (result := service.poll_once()) is not None and not result.caught_up:
            pass
        events = service.state.self_stats.event_counts()
        service.close()
        if result is None:
            return 1
        stored = ", ".join(f"{o} {n}" for (_s, o), n in sorted(events.items())) or "nothing new"
        log.info("caught up: %s", stored)
        return 0
    host, port = settings.listen_address()
    if not token:
        log.warning(
            "no IMPACTWATCH_TOKEN: POST /v1/events is closed, only the poller feeds the collector"
        )
    app = collector_app(service, token, settings.max_body_bytes, settings.request_timeout)
    try:
        server = Server(app, host, port, settings.server_limits(), name="impactwatch-collector")
        server.start()
    except OSError as exc:
        print(
            f"impactwatch collector: cannot listen on {host}:{port}: {exc.strerror}",
            file=sys.stderr,
        )
        return 2
    log.info(
        "collector serving http://%s:%d/metrics (intake %s)",
        host,
        server.port,
        "token required" if token else "open: no token set",
    )
    signal.signal(signal.SIGTERM, lambda *_: service.stop())
    try:
        service.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        service.close()
    return 0


def cmd_db(args: argparse.Namespace) -> int:
    """`impactwatch db upgrade|current`: the state DBs' schema revisions (Alembic)."""
    from sqlalchemy.exc import SQLAlchemyError

    from impactwatch.collector.state import schema
    from impactwatch.db_migrations import SchemaOutOfDate
    from impactwatch.router import tables

    chosen = [
        (f"{name} ({url_flag})", module, url)
        for name, url_flag, module, url in (
            ("state DB", "--state-db", schema, args.state_db),
            ("router DB", "--router-db", tables, args.router_db),
        )
        if url
    ]
    if not chosen:
        print(
            f"impactwatch db {args.db_command}: give --state-db and/or --router-db", file=sys.stderr
        )
        return 2
    for label, module, url in chosen:
        try:
            engine = module.make_engine(url)
            if args.db_command == "upgrade":
                module.create_or_upgrade(engine)
            current, head = module.MIGRATIONS.current(engine), module.MIGRATIONS.head()
            engine.dispose()
        except (SQLAlchemyError, SchemaOutOfDate, ValueError) as exc:  # unreachable, bad URL
            text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
            print(f"impactwatch db {args.db_command}: {label}: {text[0][:200]}", file=sys.stderr)
            return 2
        print(f"{label}: at {current or 'none'}" + ("" if current == head else f", head {head}"))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from impactwatch.demo import run

    if args.airflow_db:
        return run.run_against(args.airflow_db, args.workdir, args.catalog)
    if args.quick:
        return run.run_quick(workdir=args.workdir, serve_seconds=args.serve)
    return run.run_demo(
        args.workdir, scale=args.scale, airflow_ui=not args.no_airflow_ui, wait=not args.no_wait
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="impactwatch", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    catalog = sub.add_parser("catalog", help="work with the catalog file")
    catalog_sub = catalog.add_subparsers(dest="catalog_command", required=True)
    check = catalog_sub.add_parser("check", help="validate a catalog; every problem with file:line")
    check.add_argument("file")
    check.add_argument("--airflow-db", help="also check DAG ids against this metadata DB URL")
    check.set_defaults(func=cmd_catalog_check)

    coll = sub.add_parser("collector", help="poll Airflow's metadata DB and serve /metrics")
    coll.add_argument("--catalog", help="catalog YAML (env IMPACTWATCH_CATALOG)")
    coll.add_argument("--airflow-db", help="Airflow metadata DB URL (env IMPACTWATCH_AIRFLOW_DB)")
    coll.add_argument("--state-db", help="state DB URL (default sqlite:///impactwatch-state.db)")
    coll.add_argument("--listen", help="HOST:PORT (default 127.0.0.1:9464)")
    coll.add_argument("--poll-interval", type=float, help="seconds between cycles (default 10)")
    coll.add_argument("--backfill-days", type=float, help="history read on first start (default 7)")
    coll.add_argument("--once", action="store_true", help="poll until caught up, then exit")
    coll.set_defaults(func=cmd_collector)

    db = sub.add_parser("db", help="schema revisions of the collector's and the router's DBs")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    for name, what in (("upgrade", "upgrade to this version's schema"), ("current", "show")):
        command = db_sub.add_parser(name, help=f"{what} (Alembic revision)")
        command.add_argument("--state-db", help="the collector's state DB URL")
        command.add_argument("--router-db", help="the router's state DB URL")
        command.set_defaults(func=cmd_db)

    demo = sub.add_parser(
        "demo",
        help="the whole stack on loopback and a scripted ~5 min story (see README)",
        description="Airflow with the plugin, collector, Prometheus, Alertmanager and router on "
        "loopback ports, a scripted incident, then a summary. Ctrl-C stops everything.",
    )
    demo.add_argument("--workdir", default=".demo", help="where the demo keeps its files")
    demo.add_argument(
        "--quick", action="store_true", help="only real DAG runs read by the collector (~1 min)"
    )
    demo.add_argument(
        "--airflow-db",
        help="no story: run collector, router, Prometheus, Alertmanager against this Airflow DB",
    )
    demo.add_argument("--catalog", help="catalog for --airflow-db (default: the example)")
    demo.add_argument(
        "--scale", type=float, default=1.0, help="stretch (>1) or shrink (<1) the story's clock"
    )
    demo.add_argument("--no-airflow-ui", action="store_true", help="skip Airflow's API server")
    demo.add_argument(
        "--no-wait", action="store_true", help="exit after the summary (default: wait for Ctrl-C)"
    )
    demo.add_argument("--serve", type=float, default=0, help="--quick: keep /metrics up (s)")
    demo.set_defaults(func=cmd_demo)

    for part in PARTS:  # each part adds its own subcommand; heavy imports stay inside it
        if importlib.util.find_spec(part) is not None:
            importlib.import_module(part).add_subcommand(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
