"""Where rendered messages go: Slack's Web API, or the console and a JSON Lines file.

`SlackSink` uses `slack_sdk.WebClient` and its built-in retry handlers: HTTP 429 waits for
Retry-After and tries again. Calls that are safe to repeat (update, history, replies) also retry
on 5xx and dropped connections; `chat.postMessage` does not, because a post whose response was
lost may have been posted: the worker looks for its token in the channel before posting again.
Each failure becomes `NotSent` (certainly not delivered) or `MaybeSent` (outcome unknown).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Protocol

from impactwatch.router.render import Rendered

EVENT_TYPE = "impactwatch_message"
log = logging.getLogger(__name__)


class DeliveryError(Exception):
    def __init__(
        self, outcome: str, detail: str, retry_after: float | None = None, code: str = ""
    ) -> None:
        super().__init__(detail)
        self.outcome = outcome  # rate_limited or failed (contract.SLACK_CALL_OUTCOMES)
        self.retry_after = retry_after
        # Slack's error code (channel_not_found, invalid_auth, ...; `refusals` says what it
        # means), or http_error / unreachable when Slack gave none.
        self.code = code or ("ratelimited" if outcome == "rate_limited" else "http_error")


class NotSent(DeliveryError):
    """Slack answered and did not deliver it."""


class MaybeSent(DeliveryError):
    """No clear answer: the message may or may not be in Slack."""


class Sink(Protocol):
    def post(
        self,
        channel: str,
        message: Rendered,
        token: str,
        thread_ts: str | None = None,
        broadcast: bool = False,
        key: str = "",
    ) -> tuple[str, str]:
        """Post; returns (channel id, ts) of the new message."""
        ...

    def update(self, channel: str, ts: str, message: Rendered) -> None: ...

    def find(self, channel: str, token: str, since: float, thread_ts: str | None) -> str | None:
        """The ts of a message we posted with `token`, if Slack has it."""
        ...


def _metadata(token: str, key: str) -> dict[str, Any]:
    """Slack message metadata: finds an unsure post again, and audits delivery (which
    outbox message a Slack message is)."""
    return {"event_type": EVENT_TYPE, "event_payload": {"token": token, "message": key}}


_CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]{6,}")


def _rate_limit_handler(on_429: Callable[[str], None] | None, max_wait: float = 10.0) -> Any:
    """slack_sdk's own 429 handler (waits Retry-After, tries once more), counting each 429.

    A Retry-After longer than `max_wait` is not slept through in the delivery thread: the row
    goes back to the outbox with that due time instead, so a thread never outlives its lease.
    """
    from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

    class Counting(RateLimitErrorRetryHandler):
        def _can_retry(self, **kwargs: Any) -> bool:
            response = kwargs.get("response")
            retry = super()._can_retry(**kwargs) and _retry_after(response.headers) <= max_wait
            if retry and on_429 is not None:  # the final 429 of a call is counted by its caller
                on_429(kwargs["request"].url.rstrip("/").rsplit("/", 1)[-1].split("?")[0])
            return retry

    return Counting(max_retry_count=1)


class SlackSink:
    def __init__(
        self,
        token: str,
        base_url: str,
        timeout: int = 10,
        on_429: Callable[[str], None] | None = None,
    ) -> None:
        from slack_sdk import WebClient
        from slack_sdk.http_retry.builtin_handlers import (
            ConnectionErrorRetryHandler,
            ServerErrorRetryHandler,
        )

        url = base_url if base_url.endswith("/") else base_url + "/"
        # The SDK's INFO lines repeat what our metrics count; below WARNING it also formats a
        # debug line per call. (Its debug lines redact the token either way.)
        sdk_log = logging.getLogger("impactwatch.router.slack_sdk")
        sdk_log.setLevel(logging.WARNING)
        self.poster = WebClient(
            token=token,
            base_url=url,
            timeout=timeout,
            logger=sdk_log,
            retry_handlers=[_rate_limit_handler(on_429)],
        )
        self.client = WebClient(
            token=token,
            base_url=url,
            timeout=timeout,
            logger=sdk_log,
            retry_handlers=[
                _rate_limit_handler(on_429),
                ServerErrorRetryHandler(max_retry_count=2),
                ConnectionErrorRetryHandler(max_retry_count=2),
            ],
        )
        self._ids: dict[str, str] = {}
        self._ids_lock = threading.Lock()

    def user_groups(self) -> dict[str, str]:
        """User group handle -> id (usergroups:read), so "@risk-oncall" in the catalog pings."""
        response = self._call(self.client.usergroups_list)
        return {
            str(g["handle"]): str(g["id"])
            for g in response.get("usergroups") or []
            if g.get("handle") and g.get("id")
        }

    def channel_id(self, channel: str) -> str:
        """conversations.history wants an id; the catalog may give "#name" (cached lookup)."""
        name = channel.removeprefix("#")
        if _CHANNEL_ID.fullmatch(name):
            return name
        with self._ids_lock:
            if name in self._ids:
                return self._ids[name]
            cursor = None
            for _page in range(100):
                response = self._call(
                    self.client.conversations_list,
                    cursor=cursor,
                    limit=1000,
                    types="public_channel,private_channel",
                    exclude_archived=True,
                )
                for item in response.get("channels") or []:
                    self._ids[str(item.get("name"))] = str(item.get("id"))
                cursor = (response.get("response_metadata") or {}).get("next_cursor")
                if name in self._ids or not cursor:
                    break
            if name not in self._ids:
                raise NotSent(
                    "failed",
                    f"channel {channel!r} not found in this workspace",
                    code="channel_not_found",
                )
            return self._ids[name]

    def post(
        self,
        channel: str,
        message: Rendered,
        token: str,
        thread_ts: str | None = None,
        broadcast: bool = False,
        key: str = "",
    ) -> tuple[str, str]:
        args: dict[str, Any] = {
            "channel": channel,
            "text": message.text,
            "blocks": message.blocks,
            "metadata": _metadata(token, key),
            "unfurl_links": False,
            "unfurl_media": False,
        }
        if thread_ts:
            args.update(thread_ts=thread_ts, reply_broadcast=broadcast)
        response = self._call(self.poster.chat_postMessage, post=True, **args)
        return str(response["channel"]), str(response["ts"])

    def update(self, channel: str, ts: str, message: Rendered) -> None:
        self._call(
            self.client.chat_update,
            channel=channel,
            ts=ts,
            text=message.text,
            blocks=message.blocks,
        )

    def find(self, channel: str, token: str, since: float, thread_ts: str | None) -> str | None:
        try:
            channel = self.channel_id(channel)
        except NotSent as exc:
            if exc.outcome == "rate_limited":
                raise
            # No such channel (so no such message), or no channels:read scope to look: post.
            log.warning("cannot look for an unsure post in %s (%s); posting it", channel, exc)
            return None
        args = {
            "channel": channel,
            "oldest": f"{since:.6f}",
            "include_all_metadata": True,
        }
        cursor = None
        for _page in range(20):
            if thread_ts:
                response = self._call(
                    self.client.conversations_replies, ts=thread_ts, cursor=cursor, **args
                )
            else:
                response = self._call(self.client.conversations_history, cursor=cursor, **args)
            for message in response.get("messages") or []:
                payload = (message.get("metadata") or {}).get("event_payload") or {}
                if payload.get("token") == token:
                    return str(message["ts"])
            cursor = (response.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return None
        return None

    def _call(self, method: Any, post: bool = False, **args: Any) -> Any:
        from slack_sdk.errors import SlackApiError

        try:
            return method(**args)
        except SlackApiError as exc:
            status = exc.response.status_code
            error = str(exc.response.get("error") or f"HTTP {status}")
            if status == 429:
                after = _retry_after(exc.response.headers)
                raise NotSent("rate_limited", "rate limited", after) from None
            if status >= 500 or status == 0:
                cls = MaybeSent if post else NotSent
                raise cls("failed", f"Slack answered HTTP {status}") from None
            code = str(exc.response.get("error") or "http_error")
            raise NotSent("failed", error, code=code) from None
        except (OSError, TimeoutError) as exc:  # URLError, resets, timeouts
            cls = MaybeSent if post else NotSent
            detail = f"Slack unreachable: {type(exc).__name__}"
            raise cls("failed", detail, code="unreachable") from None


def _retry_after(headers: Any) -> float:
    for key, value in (headers or {}).items():
        if key.lower() == "retry-after":
            raw = value[0] if isinstance(value, list) else value
            try:
                return max(float(raw), 0.0)
            except ValueError:
                return 1.0
    return 1.0


class ConsoleSink:
    """No Slack token: print each message and append it to a JSON Lines file (the demo's view)."""

    def __init__(self, path: str | Path, stream: IO[str] | None = None) -> None:
        self.path = Path(path)
        self.stream = stream if stream is not None else sys.stdout
        self._lock = threading.Lock()
        self._seq = 0

    def _write(self, record: dict[str, Any]) -> None:
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(record, sort_keys=True) + "\n")
            head = "update" if record["method"] == "chat.update" else "post"
            where = record["channel"] + (" (thread)" if record.get("thread_ts") else "")
            text = _readable(record["text"])
            print(f"--- slack {head} {where} ts={record['ts']}\n{text}", file=self.stream)
            for line in _plain(record["blocks"]):
                print(f"    {line}", file=self.stream)

    def post(
        self,
        channel: str,
        message: Rendered,
        token: str,
        thread_ts: str | None = None,
        broadcast: bool = False,
        key: str = "",
    ) -> tuple[str, str]:
        with self._lock:
            self._seq += 1
            ts = f"{time.time():.0f}.{self._seq:06d}"
        self._write(
            {
                "method": "chat.postMessage",
                "channel": channel,
                "ts": ts,
                "token": token,
                "key": key,
                "thread_ts": thread_ts,
                "text": message.text,
                "blocks": message.blocks,
            }
        )
        return channel, ts

    def update(self, channel: str, ts: str, message: Rendered) -> None:
        self._write(
            {
                "method": "chat.update",
                "channel": channel,
                "ts": ts,
                "text": message.text,
                "blocks": message.blocks,
            }
        )

    def find(self, channel: str, token: str, since: float, thread_ts: str | None) -> str | None:
        if not self.path.exists():
            return None
        with self._lock, self.path.open(encoding="utf-8") as fh:
            for line in fh:
                if token in line:
                    record = json.loads(line)
                    if record.get("token") == token:
                        return str(record["ts"])
        return None


_DATE_TOKEN = re.compile(r"<!date\^[^|>]*\|([^>]*)>")


def _readable(text: str) -> str:
    """mrkdwn for a terminal: dates by their fallback, escapes undone (display only)."""
    text = _DATE_TOKEN.sub(r"\1", text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _plain(blocks: list[dict[str, Any]]) -> list[str]:
    """Block Kit as console lines: section and context text, buttons by label."""
    return [_readable(line) for line in _lines(blocks)]


def _lines(blocks: list[dict[str, Any]]) -> list[str]:
    lines: list[str] = []
    for block in blocks:
        if block.get("text"):
            lines.extend(block["text"]["text"].split("\n"))
        for item in block.get("fields", []):
            lines.append(item["text"].replace("\n", ": ", 1))
        for element in block.get("elements", []):
            if element.get("type") == "button":
                label = element["text"]["text"]
                lines.append(f"[{label}] {element['url']}" if "url" in element else f"[{label}]")
            elif "text" in element:
                lines.append(element["text"])
    return lines
