"""`impactwatch router`: Alertmanager webhooks in, one business-worded Slack incident per problem
out. Heavy imports stay inside the command so `impactwatch --help` stays fast."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from typing import Any

log = logging.getLogger("impactwatch.router")
SWITCH_INTERVAL = 0.001  # seconds (Python's default: 0.005)


def add_subcommand(subparsers: Any) -> None:
    router = subparsers.add_parser(
        "router", help="Alertmanager webhooks in, Slack incidents out (escalation router)"
    )
    router.add_argument("--catalog", help="catalog YAML (env IMPACTWATCH_ROUTER_CATALOG)")
    router.add_argument("--state-db", help="state DB URL (default sqlite:///impactwatch-router.db)")
    router.add_argument("--listen", help="HOST:PORT (default 127.0.0.1:9465)")
    router.set_defaults(func=cmd_router)
    listing = subparsers.add_parser(
        "incidents", help="open incidents, most costly to the business first (router's DB)"
    )
    listing.add_argument("--catalog", help="catalog YAML (env IMPACTWATCH_ROUTER_CATALOG)")
    listing.add_argument("--state-db", help="the router's state DB URL")
    listing.add_argument("--json", action="store_true", help="JSON instead of a listing")
    listing.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    listing.set_defaults(func=cmd_incidents)


def cmd_incidents(args: argparse.Namespace) -> int:
    """List open incidents ranked by impact (router/impact.py); reads, never writes, the DB."""
    import json
    from pathlib import Path

    from pydantic import ValidationError
    from sqlalchemy.engine import make_url

    from impactwatch.catalog.cli import load_catalog_or_exit
    from impactwatch.db_migrations import SchemaOutOfDate
    from impactwatch.router.incident_list import rows, table
    from impactwatch.router.settings import RouterSettings
    from impactwatch.router.store import RouterStore
    from impactwatch.router.tables import MIGRATIONS

    if args.limit < 1:
        print("impactwatch incidents: --limit: give 1 or more", file=sys.stderr)
        return 2
    overrides = {k: v for k in ("catalog", "state_db") if (v := getattr(args, k)) is not None}
    try:
        settings = RouterSettings(**overrides)
        url = make_url(settings.state_db)
    except (ValidationError, ValueError) as exc:
        print(f"impactwatch incidents: --state-db: {exc}", file=sys.stderr)
        return 2
    db_file = url.database if url.get_backend_name() == "sqlite" else None
    if db_file is not None and db_file != ":memory:" and not Path(db_file).is_file():
        print(f"impactwatch incidents: no router DB at {db_file} (--state-db)", file=sys.stderr)
        return 2
    catalog = load_catalog_or_exit(settings.catalog)
    try:
        MIGRATIONS.require_head(settings.state_db)  # never upgrade from a listing command
        store = RouterStore(settings.state_db)
    except SchemaOutOfDate as exc:
        print(f"impactwatch incidents: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # unreachable server, refused login
        print(f"impactwatch incidents: cannot read the router DB: {exc}", file=sys.stderr)
        return 2
    try:
        with store.read() as conn:
            view = store.open_view(conn)
    finally:
        store.close()
    found = rows(catalog, view.incidents.values(), args.limit)
    print(json.dumps(found, indent=2) if args.json else table(found))
    return 0


def cmd_router(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from impactwatch.router.settings import RouterSettings

    flags = ("catalog", "state_db", "listen")
    overrides = {k: v for k, v in vars(args).items() if k in flags and v is not None}
    try:
        settings = RouterSettings(**overrides)
    except ValidationError as exc:
        for err in exc.errors():
            name = ".".join(str(p) for p in err["loc"]).replace("_", "-")
            print(f"impactwatch router: --{name}: {err['msg']}", file=sys.stderr)
        return 2
    return run(settings)


def run(settings: Any, stop: threading.Event | None = None) -> int:
    from impactwatch.catalog.cli import load_catalog_or_exit
    from impactwatch.router.http_app import create_app
    from impactwatch.router.service import RouterService
    from impactwatch.serving import Server

    catalog = load_catalog_or_exit(settings.catalog)
    try:
        token = settings.webhook_secret()
    except OSError as exc:
        print(f"impactwatch router: cannot read the webhook token file: {exc}", file=sys.stderr)
        return 2
    if token is None:  # the webhook writes state: never open, not even on loopback
        print(
            "impactwatch router: set IMPACTWATCH_WEBHOOK_TOKEN (or _FILE); Alertmanager sends "
            "it with http_config.authorization (`impactwatch rules --token-file`)",
            file=sys.stderr,
        )
        return 2
    try:
        service = RouterService(settings, catalog)
    except Exception as exc:  # bad URL, state DB refused
        print(f"impactwatch router: cannot start: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    host, port = settings.listen_address()
    # The router's threads mostly wait on the state DB and Slack; when an answer arrives, its
    # thread should not wait the default 5 ms for the GIL (a burst's webhook latency tail).
    sys.setswitchinterval(SWITCH_INTERVAL)
    app = create_app(service, token)
    try:
        server = Server(app, host, port, settings.server_limits(), name="router")
        server.start()
    except OSError as exc:
        print(
            f"impactwatch router: cannot listen on {host}:{port}: {exc.strerror}", file=sys.stderr
        )
        service.close()
        return 2
    slack = "Slack" if settings.slack_bot_token else f"console + {settings.jsonl_path}"
    log.info("router: webhook token required, delivering to %s", slack)
    service.start()
    stopping = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    try:
        stopping.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        service.close()
    return 0
