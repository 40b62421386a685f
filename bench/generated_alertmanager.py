"""Alertmanager configs for the router benchmarks, taken from `impactwatch rules`' own output.
(A helper module; run bench_router_storm / bench_noise.)

`for_router`: the generated alertmanager.yml as it ships (routes, group_by, inhibition), the
router's URL and token file filled in, timers set through the same settings an operator would
(`--set group_wait=...`). `native_slack`: the same file with every receiver swapped for
Alertmanager's own `slack_configs` (one per team's channel, pointed at the Slack stand-in's
incoming webhook): the same grouping, timing and inhibition, so the two counts are of the same
alerts grouped the same way.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from impactwatch.alert_rules.alertmanager_config import (  # noqa: E402
    OUT_OF_BAND_RECEIVER,
    RECEIVER,
    render_alertmanager,
)
from impactwatch.alert_rules.settings import RuleSettings  # noqa: E402
from impactwatch.catalog.loader import parse_catalog  # noqa: E402
from impactwatch.catalog.model import Catalog  # noqa: E402


def catalog_model(catalog: Mapping[str, Any]) -> Catalog:
    model, problems = parse_catalog(yaml.safe_dump(dict(catalog), sort_keys=False), "bench")
    if model is None or problems:
        raise SystemExit(f"bench catalog: {[str(p) for p in problems]}")
    return model


def for_router(
    catalog: Mapping[str, Any], router_url: str, token_file: Path, **timers: float
) -> dict[str, Any]:
    settings = RuleSettings(
        router_url=router_url,
        router_token_file=str(token_file),
        **timers,  # type: ignore[arg-type]
    )
    return dict(yaml.safe_load(render_alertmanager(catalog_model(catalog), settings)))


def native_slack(
    generated: Mapping[str, Any], webhook_url: str, channels: Mapping[str, str]
) -> dict[str, Any]:
    """The generated config with Alertmanager's Slack integration in place of the router."""
    config = yaml.safe_load(yaml.safe_dump(dict(generated)))  # a deep copy
    route = config["route"]
    route["receiver"] = "slack-default"
    kept = []
    for child in route.get("routes", []):
        if child["receiver"] == OUT_OF_BAND_RECEIVER:
            continue  # the router's own alerts: none in these benchmarks
        team = _team_of(child["matchers"])
        child["receiver"] = f"slack-{team}" if team in channels else "slack-default"
        kept.append(child)
    route["routes"] = kept
    slack = {"api_url": webhook_url, "send_resolved": True}
    config["receivers"] = [
        {"name": "slack-default", "slack_configs": [{**slack, "channel": "#alerts"}]},
        *(
            {"name": f"slack-{t}", "slack_configs": [{**slack, "channel": c}]}
            for t, c in sorted(channels.items())
        ),
    ]
    assert all(r["receiver"] != RECEIVER for r in kept)
    return dict(config)


def _team_of(matchers: list[str]) -> str | None:
    for matcher in matchers:
        name, _eq, value = matcher.partition("=")
        if name.strip() == "team":
            return value.strip().strip('"')
    return None
