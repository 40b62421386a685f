from __future__ import annotations

import pytest

from impactwatch.router import escape as esc


@pytest.mark.parametrize(
    "hostile", ["<!channel>", "<https://evil.example|click>", "<@U123>", "<!subteam^S1>", "a&b"]
)
def test_escaped_text_has_no_slack_markup_left(hostile: str) -> None:
    shown = esc.text(hostile)
    assert "<" not in shown and ">" not in shown
    assert shown.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&") == hostile


def test_code_cannot_be_closed_early_and_is_escaped() -> None:
    assert esc.code("a`<!here>`b") == "`aˋ&lt;!here&gt;ˋb`"


@pytest.mark.parametrize(
    ("mention", "slack"),
    [
        ("U0RISK", "<@U0RISK>"),
        ("@W12345", "<@W12345>"),
        ("S0MARKETS", "<!subteam^S0MARKETS>"),
        ("@here", "<!here>"),
        ("@risk-oncall", "@risk-oncall"),  # a handle with no known id: text, no ping
        ("<!everyone>", "&lt;!everyone&gt;"),
    ],
)
def test_mentions(mention: str, slack: str) -> None:
    assert esc.mention(mention) == slack


def test_a_handle_with_a_known_group_id_pings_the_group() -> None:
    assert esc.mention("@risk-oncall", {"risk-oncall": "S0RISK"}) == "<!subteam^S0RISK>"


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://runbooks.example/x?y=1", True),
        ("http://grafana:3000/d/x", True),
        ("javascript:alert(1)", False),
        ("https://x.example/a b", True),  # encoded as %20
        ("/relative", False),
        ("", False),
        (None, False),
        ("https://x.example/" + "a" * 3000, False),
    ],
)
def test_only_absolute_http_urls_become_buttons(url: str | None, ok: bool) -> None:
    assert (esc.safe_url(url) is not None) is ok


def test_markup_in_urls_is_percent_encoded() -> None:
    assert esc.safe_url("https://x.example/?q=<!channel>|y") == (
        "https://x.example/?q=%3C!channel%3E%7Cy"
    )


def test_dates_render_in_each_readers_zone_with_a_utc_fallback() -> None:
    assert esc.date(1795500000, "{time}") == "<!date^1795500000^{time}|2026-11-24 06:00 UTC>"
