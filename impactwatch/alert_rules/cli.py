"""`impactwatch rules`: Prometheus rules, Alertmanager and Prometheus configs, runbooks.

    impactwatch rules --catalog examples/catalog.yaml --out examples/generated/prometheus
    impactwatch rules --catalog impact.yaml --out deploy/prometheus \\
        --router-url http://router:9465/alertmanager --set freshness_for=1m
    impactwatch rules --list-settings
    impactwatch rules --catalog impact.yaml --out DIR --check   # exit 1 if DIR is out of date

Registered by `impactwatch.cli` (its PARTS); heavy imports stay inside the command.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def add_subcommand(subparsers: Any) -> None:
    rules = subparsers.add_parser(
        "rules",
        help="generate Prometheus rules, alertmanager.yml and runbooks from the catalog",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rules.add_argument("--catalog", help="catalog YAML")
    rules.add_argument("--out", help="output folder (created; generated files replaced)")
    rules.add_argument("--router-url", help="router webhook URL (setting router_url)")
    rules.add_argument(
        "--token-file", help="bearer token file Alertmanager reads (setting router_token_file)"
    )
    rules.add_argument("--runbook-base-url", help="where DIR/runbooks is published")
    rules.add_argument(
        "--set",
        dest="pairs",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a setting (repeatable; lists comma-separated); see --list-settings",
    )
    rules.add_argument(
        "--list-settings", action="store_true", help="print every setting and its default"
    )
    rules.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if --out differs"
    )
    rules.set_defaults(func=cmd_rules)


def cmd_rules(args: argparse.Namespace) -> int:
    from pathlib import Path

    from impactwatch.alert_rules.settings import SettingsError, setting_rows, settings_from_pairs

    if args.list_settings:
        for name, _value, default, about in setting_rows():
            print(f"{name:28} {default:24} {about}")
        return 0
    if not args.catalog or not args.out:
        print("impactwatch rules: --catalog and --out are required", file=sys.stderr)
        return 2
    try:
        settings = settings_from_pairs(
            args.pairs,
            router_url=args.router_url,
            router_token_file=args.token_file,
            runbook_base_url=args.runbook_base_url,
        )
    except SettingsError as exc:
        print(f"impactwatch rules: {exc}", file=sys.stderr)
        return 2

    from impactwatch.alert_rules.generate import generate
    from impactwatch.alert_rules.writer import differences, write_tree
    from impactwatch.catalog.loader import CatalogError, load_catalog

    try:
        catalog = load_catalog(args.catalog)
    except CatalogError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    files = generate(catalog, settings)
    out = Path(args.out)
    if args.check:
        problems = differences(out, files)
        for problem in problems:
            print(f"impactwatch rules: {out}: {problem}", file=sys.stderr)
        if problems:
            print(
                f"regenerate: impactwatch rules --catalog {args.catalog} --out {args.out}",
                file=sys.stderr,
            )
        return 1 if problems else 0
    try:
        result = write_tree(out, files)
    except OSError as exc:
        print(f"impactwatch rules: cannot write {out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(
        f"{out}: {len(result.written)} written, {len(result.unchanged)} unchanged, "
        f"{len(result.removed)} removed"
    )
    return 0
