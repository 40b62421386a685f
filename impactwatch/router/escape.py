"""Make text safe for Slack: nothing from labels, annotations or the catalog can ping or link.

Slack's mrkdwn gives meaning to `&`, `<` and `>` only (`<!channel>`, `<@U123>`,
`<https://x|label>`); escaping those three turns any of them into plain text. Text objects are
sent with `verbatim: true` so Slack does not auto-link bare names either, and messages never use
`link_names`. URLs never go into mrkdwn: they become link buttons, whose `url` is a JSON field.
Pure: no I/O.
"""

from __future__ import annotations

import re
from urllib.parse import quote, urlsplit

from impactwatch.router.bounds import OUT_OF_RANGE, printable

_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})
_USER_ID = re.compile(r"[UW][A-Z0-9]{2,20}")
_GROUP_ID = re.compile(r"S[A-Z0-9]{2,20}")
_SPECIAL = {"@here": "<!here>", "@channel": "<!channel>", "@everyone": "<!everyone>"}
_URL_SAFE = ":/?#[]@!$&'()*+,;=%~-._"  # RFC 3986 reserved and unreserved: left alone
MAX_URL = 3000  # Block Kit's limit for a button's url


def text(value: object) -> str:
    """`value` as mrkdwn that shows exactly these characters and pings nobody."""
    return str(value).translate(_ESCAPES)


def clip(value: str, limit: int) -> str:
    """`value` cut to `limit` characters with an ellipsis (before escaping: never cut `&lt;`)."""
    return value if len(value) <= limit else value[: max(limit - 1, 0)] + "…"


def code(value: object, limit: int = 200) -> str:
    """An identifier (DAG id, task id) as inline code; backticks inside cannot end it early."""
    shown = clip(str(value), limit).replace("`", "ˋ")
    return f"`{text(shown)}`"


def mention(value: str, groups: dict[str, str] | None = None) -> str:
    """A catalog `mention` as Slack syntax that pings: user ids (U…, W…), user group ids (S…),
    @here/@channel/@everyone, or a user group handle that `groups` maps to its id; anything
    else is shown as plain text (a handle without a known id cannot ping through the API)."""
    name = value.strip()
    bare = name.removeprefix("@")
    if name.lower() in _SPECIAL:
        return _SPECIAL[name.lower()]
    if _USER_ID.fullmatch(bare):
        return f"<@{bare}>"
    if _GROUP_ID.fullmatch(bare):
        return f"<!subteam^{bare}>"
    if groups and bare in groups and _GROUP_ID.fullmatch(groups[bare]):
        return f"<!subteam^{groups[bare]}>"
    return text(name)


def user(user_id: str, fallback: str = "someone") -> str:
    """A Slack user who pressed a button: `<@U…>` when it is an id, else escaped text."""
    return f"<@{user_id}>" if _USER_ID.fullmatch(user_id) else text(fallback)


def safe_url(value: str | None) -> str | None:
    """`value` as an absolute http(s) URL a button may carry (characters Slack could read as
    markup, like `<`, `>` and `|`, percent-encoded), else None."""
    if not value:
        return None
    url = quote(value.strip(), safe=_URL_SAFE)
    if len(url) > MAX_URL or any(c in url for c in "\x00\r\n\t "):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return url


def date(epoch: float, fmt: str = "{date_short_pretty} {time}") -> str:
    """A time every reader sees in their own time zone, with a UTC fallback; a time the
    calendar cannot print (clamped where it entered, `bounds`) says so instead."""
    from datetime import UTC, datetime

    if not printable(epoch):
        return OUT_OF_RANGE
    fallback = datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(epoch)}^{fmt}|{fallback}>"
