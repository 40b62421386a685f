"""What a Slack error means for a message, and which channel takes it instead. Pure."""

from __future__ import annotations

import pytest

from impactwatch.catalog.model import Catalog
from impactwatch.router.refusals import (
    fallback_chain,
    metric_code,
    next_channel,
    refusal_of,
)
from impactwatch.router.render import Rendered, moved_note, with_note
from tests.unit.test_router_support import CATALOG


@pytest.mark.parametrize(
    ("code", "refusal"),
    [
        ("channel_not_found", "channel"),
        ("not_in_channel", "channel"),
        ("is_archived", "channel"),
        ("invalid_auth", "token"),
        ("token_revoked", "token"),
        ("account_inactive", "token"),
        ("missing_scope", "permanent"),
        ("msg_too_long", "permanent"),
        ("internal_error", "transient"),
        ("something_new", "transient"),
    ],
)
def test_each_slack_error_is_a_channel_token_message_or_passing_problem(
    code: str, refusal: str
) -> None:
    assert refusal_of(code) == refusal


def test_metric_codes_stay_bounded() -> None:
    assert metric_code("channel_not_found") == "channel_not_found"
    assert metric_code("x" * 500) == "other"


def catalog_with(**changes: object) -> Catalog:
    data = {**CATALOG, "teams": {k: dict(v) for k, v in CATALOG["teams"].items()}}
    for path, value in changes.items():
        where, _, key = path.partition("__")
        target = data["teams"][where] if where in data["teams"] else data.setdefault(where, {})
        target[key] = value
    return Catalog.model_validate(data)


def test_the_fallback_is_the_teams_own_then_the_catalogs_then_the_platform_channel() -> None:
    plain = catalog_with()
    assert fallback_chain("markets", plain, "#impactwatch") == [
        "#markets-data",
        "#data-platform",  # the defaults team's channel
        "#impactwatch",
    ]
    custom = catalog_with(markets__fallback_channel="#markets-oncall",
                          defaults__fallback_channel="#all-alerts")  # fmt: skip
    chain = fallback_chain("markets", custom, "#impactwatch")
    assert chain == ["#markets-data", "#markets-oncall", "#all-alerts", "#data-platform",
                     "#impactwatch"]  # fmt: skip
    assert next_channel("#markets-data", chain) == "#markets-oncall"
    assert next_channel("markets-oncall", chain) == "#all-alerts"  # with or without '#'
    assert next_channel("#impactwatch", chain) is None  # the last resort
    assert next_channel("#elsewhere", chain) == "#markets-data"
    # The platform team's own messages: its channel, then the router's default.
    assert fallback_chain("platform", plain, "#impactwatch") == ["#data-platform", "#impactwatch"]
    # A team the catalog does not know posts to the router's default channel first.
    assert fallback_chain("nobody", plain, "#impactwatch") == ["#impactwatch", "#data-platform"]


def test_a_moved_message_says_where_it_could_not_go_and_why() -> None:
    note = moved_note("#risk<!channel>", "channel_not_found")
    assert note == (
        ":warning: Could not post in #risk&lt;!channel&gt;: channel_not_found; posted here instead."
    )
    moved = with_note(Rendered("Warning: x", [{"type": "section"}]), note)
    assert moved.text == "Warning: x"
    assert moved.blocks[0]["elements"][0]["text"] == note and moved.blocks[1] == {"type": "section"}
