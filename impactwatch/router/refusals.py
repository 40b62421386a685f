"""What a Slack error means for a message, and where a message goes when its channel is refused.
Pure.

Slack answers an error code (https://api.slack.com/methods/chat.postMessage#errors). Some are
about the channel (deleted, archived, the bot not in it): another channel can take the message,
so it moves to the team's fallback with a line saying why. Some are about the token (revoked,
the account deactivated): no channel helps, so delivery pauses for a long hold and the outbox's
age alert (alert_rules/platform.py) tells someone by a path outside Slack. Some are about the
message itself (a scope missing for it, too long): retried after a long hold. Anything else is
taken as passing (retried with backoff).
"""

from __future__ import annotations

from typing import Literal

from impactwatch.catalog.model import Catalog

Refusal = Literal["channel", "token", "permanent", "transient"]

CHANNEL_ERRORS = frozenset(
    {
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "channel_is_archived",
        "restricted_action",
        "restricted_action_read_only_channel",
        "restricted_action_thread_only_channel",
        "restricted_action_non_threadable_channel",
        "team_access_not_granted",
    }
)
TOKEN_ERRORS = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "org_login_required",
        "team_disabled",
    }
)
PERMANENT_ERRORS = frozenset(
    {
        "missing_scope",
        "not_allowed_token_type",
        "no_permission",
        "ekm_access_denied",
        "access_denied",
        "msg_too_long",
        "no_text",
        "invalid_blocks",
        "invalid_blocks_format",
        "too_many_attachments",
        "invalid_metadata_format",
        "invalid_metadata_schema",
        "metadata_too_large",
    }
)
# Codes the metric shows by name; any other is counted as `other` (the label stays bounded).
OTHER_CODES = frozenset(
    {"message_not_found", "ratelimited", "rate_limited", "internal_error", "fatal_error",
     "service_unavailable", "request_timeout", "http_error", "unreachable"}
)  # fmt: skip
KNOWN_CODES = CHANNEL_ERRORS | TOKEN_ERRORS | PERMANENT_ERRORS | OTHER_CODES


def refusal_of(code: str) -> Refusal:
    if code in CHANNEL_ERRORS:
        return "channel"
    if code in TOKEN_ERRORS:
        return "token"
    if code in PERMANENT_ERRORS:
        return "permanent"
    return "transient"


def metric_code(code: str) -> str:
    """`code` as a bounded metric label value."""
    return code if code in KNOWN_CODES else "other"


def fallback_chain(team: str, catalog: Catalog, default_channel: str) -> list[str]:
    """Channels a team's message may go to, in order: the team's own, its `fallback_channel`,
    the catalog's `defaults.fallback_channel`, the defaults team's channel (the platform
    team's), and `default_channel` (the router's setting) when none of those exist."""
    own = catalog.teams.get(team)
    platform_team = catalog.teams.get(catalog.defaults.team or "")
    candidates = [
        own.slack_channel if own is not None else default_channel,
        own.fallback_channel if own is not None else None,
        catalog.defaults.fallback_channel,
        platform_team.slack_channel if platform_team is not None else None,
        default_channel,
    ]
    chain: list[str] = []
    for channel in candidates:
        if channel and _same(channel) not in {_same(c) for c in chain}:
            chain.append(channel)
    return chain


def next_channel(refused: str, chain: list[str]) -> str | None:
    """The channel after `refused` in `chain` (the first, if `refused` is not in it), or None
    when `refused` is the last resort."""
    names = [_same(c) for c in chain]
    if _same(refused) not in names:
        return chain[0] if chain else None
    at = names.index(_same(refused))
    return chain[at + 1] if at + 1 < len(chain) else None


def _same(channel: str) -> str:
    return channel.strip().removeprefix("#").lower()
