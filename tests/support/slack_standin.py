"""A local stand-in for Slack's Web API on a loopback port, spoken to by the real slack_sdk.

It speaks the wire format (`POST /api/<method>` with JSON or form bodies, `GET` with query
parameters, bearer token, `{"ok": ..., "error": ...}` answers, HTTP 429 with `Retry-After`),
keeps channels, messages, threads and message metadata, and records every call. Tests script
faults: `fail("chat.postMessage", status=429, retry_after=1)`, a 5xx, an error code, a fault
*after* the effect (posted, then the answer is lost), or a slow answer (`delay=3`); a channel
refused for good (`refuse_channel("#x", "not_in_channel")`); a revoked token (set `token`). It can
rate-limit each channel like Slack (one message per second) and takes Alertmanager's
`slack_configs` posts on an incoming-webhook path, so both can be counted on the same alerts.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.support.background_http import BackgroundHTTPServer

WEBHOOK_PATH = "/services/T0STANDIN/B0STANDIN/standin"


@dataclass
class Call:
    method: str
    args: dict[str, Any]
    status: int
    error: str | None
    at: float


@dataclass
class Fault:
    method: str
    status: int = 200
    error: str | None = None
    retry_after: float | None = None
    after_effect: bool = False  # do the work, then answer with the fault (or drop)
    drop: bool = False  # close the connection without an answer
    times: int = 1
    delay: float = 0.0  # seconds before the call takes effect (a slow Slack)

    @property
    def slow_only(self) -> bool:
        """Only a delay: the call takes effect and answers as usual, `delay` seconds late."""
        return self.status == 200 and self.error is None and not self.drop


@dataclass
class Message:
    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]]
    thread_ts: str | None = None
    metadata: dict[str, Any] | None = None
    edits: int = 0
    broadcast: bool = False


@dataclass
class _State:
    calls: list[Call] = field(default_factory=list)
    messages: dict[str, Message] = field(default_factory=dict)  # ts -> message
    channels: dict[str, str] = field(default_factory=dict)  # name -> id
    faults: deque[Fault] = field(default_factory=deque)
    webhook_posts: list[dict[str, Any]] = field(default_factory=list)
    last_send: dict[str, float] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)  # channel id -> error, for good


class SlackStandIn(BackgroundHTTPServer):
    def __init__(
        self,
        token: str = "xoxb-standin-token",
        channel_interval: float | None = None,
        rate_limit_updates: bool = True,
    ) -> None:
        self.token = token
        self.channel_interval = channel_interval  # None: no rate limit
        self.rate_limit_updates = rate_limit_updates
        self.state = _State()
        self.user_groups: dict[str, str] = {}  # handle -> id, for usergroups.list
        self.lock = threading.Lock()
        self._seq = 0
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                standin._serve(self)

            def do_POST(self) -> None:
                standin._serve(self)

        super().__init__(Handler)
        self.url = f"http://127.0.0.1:{self.port}/api/"
        self.webhook_url = f"http://127.0.0.1:{self.port}{WEBHOOK_PATH}"

    # -- scripting and reading ----------------------------------------------------------------
    def fail(self, method: str, **fault: Any) -> None:
        with self.lock:
            self.state.faults.append(Fault(method, **fault))

    def refuse_channel(self, name: str, error: str = "channel_not_found") -> None:
        """Every call about channel `name` fails with `error` from now on (deleted, archived,
        the bot removed from it: `not_in_channel`, `is_archived`...)."""
        with self.lock:
            self.state.refused[self._channel(name)] = error

    def calls(self, method: str | None = None) -> list[Call]:
        with self.lock:
            return [c for c in self.state.calls if method is None or c.method == method]

    def posts(self) -> list[Message]:
        """Messages posted (top-level and thread replies), oldest first."""
        with self.lock:
            return sorted(self.state.messages.values(), key=lambda m: float(m.ts))

    def top_level(self, channel: str | None = None) -> list[Message]:
        cid = self.channel_id(channel) if channel else None
        return [
            m for m in self.posts() if m.thread_ts is None and (cid is None or m.channel == cid)
        ]

    def replies(self, ts: str) -> list[Message]:
        return [m for m in self.posts() if m.thread_ts == ts]

    def channel_id(self, name: str) -> str:
        with self.lock:
            return self._channel(name)

    def webhook_posts(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.state.webhook_posts)

    # -- the server -------------------------------------------------------------------------------
    def _channel(self, name: str) -> str:
        key = name.removeprefix("#")
        if key in self.state.channels.values():
            return key
        if key not in self.state.channels:
            self.state.channels[key] = f"C{len(self.state.channels) + 1:08d}"
        return self.state.channels[key]

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        if parts.path == WEBHOOK_PATH:
            with self.lock:
                self.state.webhook_posts.append(json.loads(raw or b"{}"))
            return _send(handler, 200, b"ok", "text/plain")
        method = parts.path.removeprefix("/api/")
        args: dict[str, Any] = dict(parse_qsl(parts.query))
        ctype = handler.headers.get("Content-Type", "")
        if raw and "json" in ctype:
            args.update(json.loads(raw))
        elif raw:
            args.update(parse_qsl(raw.decode()))
        for key in ("blocks", "metadata"):
            if isinstance(args.get(key), str):
                args[key] = json.loads(args[key])
        auth = handler.headers.get("Authorization", "")
        with self.lock:
            if method.startswith("chat.") and args.get("channel"):
                self._channel(str(args["channel"]))  # channels exist before anyone posts
            fault = self._fault(method)
        if fault is not None and fault.delay:
            time.sleep(fault.delay)  # a slow Slack: nothing has happened yet
            if fault.slow_only:
                fault = None  # then it works as usual
        now = time.time()
        with self.lock:
            if auth != f"Bearer {self.token}":
                status, answer = 200, {"ok": False, "error": "invalid_auth"}
            elif refused := self._refused(args):
                status, answer = 200, {"ok": False, "error": refused}
            elif fault is not None and not fault.after_effect:
                status, answer = self._fault_answer(fault)
            else:
                status, answer = self._method(method, args, now)
                if fault is not None and answer.get("ok"):
                    status, answer = self._fault_answer(fault)
            error = None if answer.get("ok") else str(answer.get("error"))
            self.state.calls.append(Call(method, args, status, error, now))
        if fault is not None and fault.drop:
            handler.close_connection = True
            return
        headers = {}
        if status == 429:
            headers["Retry-After"] = str(answer.pop("retry_after"))
        _send(handler, status, json.dumps(answer).encode(), "application/json", headers)

    def _refused(self, args: dict[str, Any]) -> str | None:
        channel = str(args.get("channel") or "")
        return self.state.refused.get(self._channel(channel)) if channel else None

    def _fault(self, method: str) -> Fault | None:
        for fault in self.state.faults:
            if fault.method == method:
                fault.times -= 1
                if fault.times <= 0:
                    self.state.faults.remove(fault)
                return fault
        return None

    @staticmethod
    def _fault_answer(fault: Fault) -> tuple[int, dict[str, Any]]:
        if fault.status == 429:
            return 429, {"ok": False, "error": "ratelimited", "retry_after": fault.retry_after or 1}
        if fault.status >= 500:
            return fault.status, {"ok": False, "error": "internal_error"}
        return 200, {"ok": False, "error": fault.error or "fatal_error"}

    def _rate_limited(self, channel: str, now: float) -> int | None:
        if self.channel_interval is None:
            return None
        last = self.state.last_send.get(channel)
        if last is not None and now - last < self.channel_interval:
            return max(1, math.ceil(self.channel_interval - (now - last)))
        self.state.last_send[channel] = now
        return None

    def _ts(self, now: float) -> str:
        self._seq += 1
        return f"{int(now)}.{self._seq:06d}"

    def _method(self, method: str, args: dict[str, Any], now: float) -> tuple[int, dict[str, Any]]:
        if method in ("chat.postMessage", "chat.update"):
            channel = self._channel(str(args.get("channel", "")))
            if method == "chat.update" and args.get("ts") not in self.state.messages:
                return 200, {"ok": False, "error": "message_not_found"}
            if method == "chat.postMessage" or self.rate_limit_updates:
                wait = self._rate_limited(channel, now)
                if wait is not None:
                    return 429, {"ok": False, "error": "ratelimited", "retry_after": wait}
            if method == "chat.update":
                message = self.state.messages[args["ts"]]
                message.text, message.blocks = args.get("text", ""), args.get("blocks") or []
                message.edits += 1
                return 200, {"ok": True, "channel": channel, "ts": message.ts}
            message = Message(
                channel=channel,
                ts=self._ts(now),
                text=str(args.get("text", "")),
                blocks=args.get("blocks") or [],
                thread_ts=args.get("thread_ts"),
                metadata=args.get("metadata"),
                broadcast=bool(args.get("reply_broadcast")),
            )
            self.state.messages[message.ts] = message
            return 200, {"ok": True, "channel": channel, "ts": message.ts}
        if method in ("conversations.history", "conversations.replies"):
            channel = str(args.get("channel", ""))
            if channel not in self.state.channels.values():
                return 200, {"ok": False, "error": "channel_not_found"}
            oldest = float(args.get("oldest") or 0)
            found = [
                m
                for m in self.state.messages.values()
                if m.channel == channel
                and float(m.ts) > oldest
                and (
                    m.thread_ts is None
                    if method == "conversations.history"
                    else m.thread_ts == args.get("ts") or m.ts == args.get("ts")
                )
            ]
            found.sort(key=lambda m: float(m.ts), reverse=method == "conversations.history")
            with_meta = str(args.get("include_all_metadata")).lower() in ("1", "true")
            return 200, {
                "ok": True,
                "messages": [_wire(m, with_meta) for m in found],
                "has_more": False,
                "response_metadata": {"next_cursor": ""},
            }
        if method == "conversations.list":
            items = [{"id": cid, "name": name} for name, cid in self.state.channels.items()]
            return 200, {"ok": True, "channels": items, "response_metadata": {"next_cursor": ""}}
        if method == "usergroups.list":
            groups = [{"id": gid, "handle": h} for h, gid in self.user_groups.items()]
            return 200, {"ok": True, "usergroups": groups}
        if method == "auth.test":
            return 200, {"ok": True, "user_id": "U0BOT", "team_id": "T0STANDIN"}
        return 200, {"ok": False, "error": "unknown_method"}


def _wire(message: Message, with_meta: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "message", "ts": message.ts, "text": message.text}
    if message.thread_ts:
        out["thread_ts"] = message.thread_ts
    if with_meta and message.metadata:
        out["metadata"] = message.metadata
    return out


def _send(
    handler: BaseHTTPRequestHandler,
    status: int,
    data: bytes,
    ctype: str,
    headers: dict[str, str] | None = None,
) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", ctype)
    handler.send_header("Content-Length", str(len(data)))
    for key, value in (headers or {}).items():
        handler.send_header(key, value)
    handler.end_headers()
    handler.wfile.write(data)
