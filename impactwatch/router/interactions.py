"""Parse Slack interaction requests (button presses) into `Action`s, at the edge. Pure.

Slack sends `application/x-www-form-urlencoded` with one field, `payload`, a JSON document of
type `block_actions`: `actions[0].action_id` says which button, its `value` carries our incident
id, `user.id` who pressed it. The signature is checked before this runs (`http_app`).
"""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs

from impactwatch.router.model import Action
from impactwatch.router.render import ACK, NOT_ACTIONABLE, SNOOZE

KINDS = {ACK: "ack", SNOOZE: "snooze", NOT_ACTIONABLE: "not_actionable"}
_INCIDENT_ID = re.compile(r"[A-Za-z0-9_-]{1,40}")
_USER_ID = re.compile(r"[A-Z0-9]{2,30}")


class InteractionError(ValueError):
    """Not a button press this router understands; safe to send back."""


def parse_action(body: bytes) -> Action | None:
    """The press in `body`; None for presses that need nothing (link buttons)."""
    try:
        form = parse_qs(body.decode("utf-8"), strict_parsing=True)
    except (UnicodeDecodeError, ValueError):
        raise InteractionError("body is not a form with a `payload` field") from None
    raw = form.get("payload")
    if not raw:
        raise InteractionError("no `payload` field in the form")
    try:
        payload = json.loads(raw[0])
    except json.JSONDecodeError as exc:
        raise InteractionError(f"payload is not JSON: {exc}") from None
    if not isinstance(payload, dict) or payload.get("type") != "block_actions":
        kind = payload.get("type") if isinstance(payload, dict) else None
        raise InteractionError(f"unsupported interaction type {kind!r}; expected block_actions")
    actions = payload.get("actions")
    if not isinstance(actions, list) or not actions or not isinstance(actions[0], dict):
        raise InteractionError("payload.actions is empty")
    action = actions[0]
    action_id = str(action.get("action_id", ""))
    if action_id.startswith("iw_link_"):
        return None
    kind = KINDS.get(action_id)
    if kind is None:
        raise InteractionError(f"unknown action {action_id!r}")
    value = str(action.get("value", ""))
    if not _INCIDENT_ID.fullmatch(value):
        raise InteractionError("payload.actions.0.value is not an incident id")
    user = payload.get("user") if isinstance(payload.get("user"), dict) else {}
    user_id = str(user.get("id", ""))
    if not _USER_ID.fullmatch(user_id):
        raise InteractionError("payload.user.id is missing or malformed")
    return Action(kind=kind, incident_id=value, user_id=user_id)
