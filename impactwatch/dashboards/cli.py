"""`impactwatch dashboards`: Grafana dashboards and provisioning files from the catalog.

    impactwatch dashboards --catalog examples/catalog.yaml --out examples/generated/grafana
    impactwatch dashboards --catalog impact.yaml --out deploy/grafana \\
        --prometheus-url http://prometheus.monitoring:9090
    impactwatch dashboards --catalog impact.yaml --out DIR --check   # exit 1 if DIR is stale

Registered by `impactwatch.cli` (its PARTS); heavy imports stay inside the command.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def add_subcommand(subparsers: Any) -> None:
    cmd = subparsers.add_parser(
        "dashboards",
        help="generate Grafana dashboards and provisioning files from the catalog",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cmd.add_argument("--catalog", required=True, help="catalog YAML")
    cmd.add_argument("--out", required=True, help="output folder (created; files replaced)")
    cmd.add_argument(
        "--prometheus-url",
        help="URL Grafana reaches Prometheus at (default: docker-compose's http://prometheus:9090)",
    )
    cmd.add_argument(
        "--dashboards-path",
        help="where Grafana finds the dashboards/ folder (default: "
        "/var/lib/grafana/dashboards/impactwatch)",
    )
    cmd.add_argument("--check", action="store_true", help="write nothing; exit 1 if --out differs")
    cmd.set_defaults(func=cmd_dashboards)


def cmd_dashboards(args: argparse.Namespace) -> int:
    from pathlib import Path

    from impactwatch.catalog.loader import CatalogError, load_catalog
    from impactwatch.dashboards.generate import differences, generate, write_tree
    from impactwatch.dashboards.provisioning import GrafanaSettings

    try:
        catalog = load_catalog(args.catalog)
    except CatalogError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    given = {"prometheus_url": args.prometheus_url, "dashboards_path": args.dashboards_path}
    settings = GrafanaSettings(**{k: v for k, v in given.items() if v is not None})
    files = generate(catalog, settings)
    out = Path(args.out)
    if args.check:
        problems = differences(out, files)
        for problem in problems:
            print(f"impactwatch dashboards: {out}: {problem}", file=sys.stderr)
        if problems:
            print(
                f"regenerate: impactwatch dashboards --catalog {args.catalog} --out {args.out}",
                file=sys.stderr,
            )
        return 1 if problems else 0
    try:
        changed = write_tree(out, files)
    except OSError as exc:
        print(f"impactwatch dashboards: cannot write {out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"{out}: {len(changed)} written, {len(files) - len(changed)} unchanged")
    return 0
