"""The delivery worker: drains the outbox into Slack (or the console), exactly once.

Per message row: render the incident as it is now; post it if it was never posted (after
looking in Slack for an earlier post whose answer was lost), else `chat.update` it when what
Slack shows differs; then, for an incident's main message, reply in its thread with what changed
since the thread was last told. Each Slack call is followed by its own commit. A channel gets at
most one message per `channel_interval`; a row that would wait longer goes back to the outbox
with a due time, so other channels keep flowing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, NoReturn

from impactwatch.router import notices
from impactwatch.router.failure_words import failure_dag
from impactwatch.router.failures import FailureReport
from impactwatch.router.metrics import RouterStats
from impactwatch.router.model import Incident
from impactwatch.router.outbox import MessageRow, Outbox
from impactwatch.router.refusals import fallback_chain, metric_code, next_channel, refusal_of
from impactwatch.router.render import (
    RenderContext,
    Rendered,
    moved_note,
    render_affected,
    render_incident,
    render_merged,
    with_note,
)
from impactwatch.router.sinks import DeliveryError, MaybeSent, Sink
from impactwatch.router.store import RouterStore

log = logging.getLogger(__name__)
SHORT_WAIT = 0.3  # wait this long in the thread for a channel slot; longer: back to the outbox
UNSURE_LOOKBACK = 120.0
HOLD_RENDER = 300.0  # a message that cannot be rendered is tried again this much later
WAKE_DEBOUNCE = 0.2  # a burst of webhooks rings hundreds of times a second: look 5 times


class Pacer:
    """At most one Slack message per channel per `interval` from this process."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.clock = clock
        self._next: dict[str, float] = {}
        self._lock = threading.Lock()

    def acquire(self, channel: str) -> float:
        """0 when the slot is taken now, else seconds until one is free (nothing taken)."""
        with self._lock:
            now = self.clock()
            free = self._next.get(channel, 0.0)
            if free <= now:
                self._next[channel] = now + self.interval
                return 0.0
            return free - now

    def hold(self, channel: str, seconds: float) -> None:
        """Slack said 429: nothing to this channel for `seconds`."""
        with self._lock:
            until = self.clock() + seconds
            self._next[channel] = max(self._next.get(channel, 0.0), until)

    def busy(self, margin: float) -> tuple[frozenset[str], float | None]:
        """Channels not free within `margin` seconds, and seconds until the first of them is."""
        with self._lock:
            now = self.clock()
            waits = {c: t - now for c, t in self._next.items() if t - now > margin}
            return frozenset(waits), min(waits.values(), default=None)


class Doorbell:
    """Wakes one idle delivery thread per ring (an Event would wake them all for one row);
    a thread that finds work rings again, so more threads join only when there is more."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._rung = False

    def set(self) -> None:
        with self._cond:
            self._rung = True
            self._cond.notify()

    def set_all(self) -> None:
        with self._cond:
            self._rung = True
            self._cond.notify_all()

    def wait(self, timeout: float) -> bool:
        """Wait for a ring (at most `timeout` s); True when rung."""
        with self._cond:
            if not self._rung:
                self._cond.wait(timeout)
            rung, self._rung = self._rung, False
            return rung


@dataclass
class Job:
    rendered: Rendered | None  # None: cancel the row
    rev: int
    incident: Incident | None = None


class Deferred(Exception):
    """The row went back to the outbox; stop working on it."""


class DeliveryWorker:
    def __init__(
        self,
        store: RouterStore,
        sink: Sink,
        ctx: RenderContext,
        stats: RouterStats,
        *,
        owner: str | None = None,
        lease: float = 10.0,
        channel_interval: float = 1.0,
        threads: int = 4,
        hold: float = 600.0,
        clock: Callable[[], float] = time.time,
        failures: Callable[[str], FailureReport | None] | None = None,
    ) -> None:
        self.store = store
        self.failures = failures  # a DAG's latest failure, from the collector (failures.py)
        self.hold = hold  # a refused token or message waits this long before the next try
        self.paused_until = 0.0  # Slack refused the token: no delivery before this
        self.sink = sink
        self.ctx = ctx
        self.stats = stats
        self.outbox = Outbox(store, owner or f"router-{uuid.uuid4().hex[:12]}", lease)
        # Rows this process is delivering; their leases are renewed every `lease / 3` s while
        # it lives, so a crash frees them within one lease, and a slow Slack call keeps them.
        self._held: set[int] = set()
        self._held_lock = threading.Lock()
        # A little under Slack's limit: sends leave together but may arrive a few ms apart.
        self.pacer = Pacer(channel_interval * 1.05)
        self.clock = clock
        self.threads = threads
        self.wake = Doorbell()
        self._stop = threading.Event()
        self._running: list[threading.Thread] = []

    # -- threads ------------------------------------------------------------------------------
    def start(self) -> None:
        for n in range(self.threads):
            thread = threading.Thread(target=self._loop, name=f"iw-delivery-{n}", daemon=True)
            thread.start()
            self._running.append(thread)
        beat = threading.Thread(target=self._heartbeat, name="iw-delivery-lease", daemon=True)
        beat.start()
        self._running.append(beat)

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.outbox.lease / 3):
            with self._held_lock:
                held = sorted(self._held)
            if not held:
                continue
            try:
                self.outbox.renew(held, self.clock())
            except Exception as exc:  # the DB went away: the leases may lapse, then re-claimed
                reason = self.stats.store_failed("delivery", exc)
                log.warning("lease renewal (%s): %s", reason, type(exc).__name__)

    def stop(self, timeout: float = 15.0) -> None:
        self._stop.set()
        self.wake.set_all()
        for thread in self._running:
            thread.join(timeout)
        self._running.clear()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                worked = self.run_once()
            except Exception as exc:  # the DB went away: try again shortly, never die
                reason = self.stats.store_failed("delivery", exc)
                log.warning("delivery (%s): %s", reason, type(exc).__name__)
                worked = False
                self._stop.wait(1.0)
            if not worked and self.wake.wait(self._idle_wait()):
                # Many webhooks in a row ring many times: look once per short while.
                self._stop.wait(WAKE_DEBOUNCE)

    def _idle_wait(self) -> float:
        paused = self.paused_until - self.clock()
        if paused > 0:
            return min(paused, 1.0)
        busy, free_in = self.pacer.busy(SHORT_WAIT)
        try:
            due = self.outbox.next_due(busy)
        except Exception:
            return 1.0
        wait = 1.0 if due is None else max(due - self.clock(), 0.02)
        return min(wait, free_in if free_in is not None else wait, 1.0)

    def run_once(self) -> bool:
        """Deliver one due row; False when none was due (or delivery is paused)."""
        if self.clock() < self.paused_until:
            return False
        busy, _ = self.pacer.busy(SHORT_WAIT)
        rows = self.outbox.claim(self.clock(), busy=busy)
        if rows and self.threads > 1 and self._running:
            self.wake.set()  # there may be more: let an idle thread look too
        for row in rows:
            with self._held_lock:
                self._held.add(row.id)
            try:
                with contextlib.suppress(Deferred):
                    self.deliver(row)
            finally:
                with self._held_lock:
                    self._held.discard(row.id)
        return bool(rows)

    def drain(self, timeout: float = 30.0, everything: bool = False) -> bool:
        """Deliver until nothing is due now, or with `everything` until nothing is pending at
        all (waiting out rate limits and backoffs): True when done in time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.run_once():
                continue
            due = self.outbox.next_due()
            if due is None or (due > self.clock() and not everything):
                return True
            time.sleep(min(max(due - self.clock(), 0.01), 0.2))
        return False

    # -- one row ------------------------------------------------------------------------------
    def deliver(self, row: MessageRow) -> None:
        now = self.clock()
        try:
            job = self._job(row)
        except Exception as exc:  # a bug or a value nobody foresaw: this row waits, not all
            self.stats.count("delivery_held", "render_failed")
            log.warning("cannot render %s: %s", row.key, type(exc).__name__)
            self._defer(row, HOLD_RENDER, f"render: {type(exc).__name__}")
        if job.rendered is None:
            self.outbox.cancel(row)
            return
        if row.moved_from:
            job.rendered = with_note(job.rendered, moved_note(row.moved_from, row.moved_code or ""))
        if row.ts is None:
            row = self._post_new(row, job)
        elif row.updatable and row.done_rev < job.rev and job.rendered.digest() != row.shown:
            self._slot(row)
            where = row.channel_id or row.channel
            self._call(row, "chat.update", self.sink.update, where, row.ts, job.rendered)
            # Recorded at once: a thread reply still to come must not redo this edit.
            self.outbox.set(row, shown=job.rendered.digest(), done_rev=job.rev)
        if row.role == "primary" and job.incident is not None:
            self._reply(row, job.incident)
        self.outbox.finish(row, job.rev, now)

    def _job(self, row: MessageRow) -> Job:
        if row.payload is not None:
            data = json.loads(row.payload)
            return Job(Rendered(data["text"], data["blocks"]), row.wanted_rev)
        now = self.clock()
        with self.store.read() as conn:
            view = self.store.load_view(conn, incident_ids=[row.incident_id or ""])
        incident = view.incidents.get(row.incident_id or "")
        if incident is None:
            return Job(None, row.wanted_rev)
        target = view.incidents.get(incident.merged_into or "")
        role, _, arg = row.role.partition(":")
        if incident.status == "merged" and role in ("primary", "affected"):
            if row.ts is None:
                return Job(None, incident.rev)  # folded before it went out: never posted
            return Job(render_merged(self.ctx, incident, target), incident.rev, incident)
        if role == "primary":
            rendered = render_incident(self.ctx, incident, now, self._failure(incident))
            return Job(rendered, incident.rev, incident)
        if role == "affected":
            if row.ts is None and incident.status != "open":
                return Job(None, incident.rev)  # over before it reached the team: say nothing
            return Job(render_affected(self.ctx, incident, arg, now), incident.rev, incident)
        if role == "escalation":
            rendered = notices.render_escalation(self.ctx, incident, int(arg), now)
            return Job(rendered, incident.rev, incident)
        raise ValueError(f"unknown message role {row.role!r}")

    def _failure(self, incident: Incident) -> FailureReport | None:
        """The collector's facts of the failed run the incident is about, if it has any."""
        dag = failure_dag(incident) if self.failures is not None else None
        if dag is None or self.failures is None:
            return None
        return self.failures(dag)

    def _post_new(self, row: MessageRow, job: Job) -> MessageRow:
        assert job.rendered is not None
        thread_ts = None
        if row.thread_of:
            parent = self.outbox.parent(row.thread_of)
            if parent is None:
                self._defer(row, 2.0, "waiting for the incident's message")
            thread_ts, parent_channel = parent
            row = replace(row, channel_id=parent_channel)  # where the thread is (it may move)
        channel, ts = self._post(row, job.rendered, row.post_token, row.post_at, thread_ts)
        told = json.dumps(notices.snapshot(job.incident)) if job.incident else None
        values: dict[str, Any] = {
            "ts": ts,
            "channel_id": channel,
            "post_token": None,
            "post_at": None,
            "shown": job.rendered.digest(),
            "done_rev": job.rev,
        }
        if row.role == "primary":
            values["told"] = told
        self.outbox.set(row, **values)
        told_now = values.get("told", row.told)
        return replace(
            row, ts=ts, channel_id=channel, shown=values["shown"], told=told_now, done_rev=job.rev
        )

    def _post(
        self,
        row: MessageRow,
        rendered: Rendered,
        token: str | None,
        since: float | None,
        thread_ts: str | None,
        field: str = "post",
    ) -> tuple[str, str]:
        """Post once: an unsure earlier attempt (token set) is looked for in Slack first."""
        if token is not None:
            lookback = (since or self.clock()) - UNSURE_LOOKBACK
            where = row.channel_id or row.channel
            method = "conversations.replies" if thread_ts else "conversations.history"
            found = self._call(row, method, self.sink.find, where, token, lookback, thread_ts)
            if found is not None:
                log.info("found an unsure post of %s in Slack; not posting it again", row.key)
                return where, found
        self._slot(row)
        token = token or uuid.uuid4().hex
        attempt = {f"{field}_token": token, f"{field}_at": self.clock()}
        # Renew the lease with the token, or stop here if it was lost (heartbeats missed).
        if not self.outbox.set(row, lease_until=self.clock() + self.outbox.lease, **attempt):
            raise Deferred  # the lease ran out meanwhile: another replica owns this row now
        broadcast = row.role.startswith("escalation:") and thread_ts is not None
        where = row.channel_id or row.channel
        return self._call(
            row,
            "chat.postMessage",
            self.sink.post,
            where,
            rendered,
            token,
            thread_ts,
            broadcast,
            f"{row.key}:{field}" if field == "reply" else row.key,
            unsure_keeps=field,
        )

    def _reply(self, row: MessageRow, incident: Incident) -> None:
        """Tell the thread what changed since it was last told (one reply for many changes)."""
        told = json.loads(row.told) if row.told else notices.snapshot(incident)
        if row.reply_token is not None and row.reply_told is not None:
            lookback = (row.reply_at or self.clock()) - UNSURE_LOOKBACK
            found = self._call(
                row,
                "conversations.replies",
                self.sink.find,
                row.channel_id or row.channel,
                row.reply_token,
                lookback,
                row.ts,
            )
            if found is not None:
                told = json.loads(row.reply_told)
                self.outbox.set(row, told=row.reply_told, reply_token=None, reply_told=None)
                row = replace(row, reply_token=None, told=row.reply_told)
        now_told = notices.snapshot(incident)
        text = notices.thread_reply(self.ctx, incident, told, self.clock())
        if text is None:
            if now_told != told:
                self.outbox.set(row, told=json.dumps(now_told))
            return
        self.outbox.set(row, reply_told=json.dumps(now_told), reply_text=text)
        self._post(row, notices.render_reply(text), row.reply_token, row.reply_at, row.ts, "reply")
        self.outbox.set(row, told=json.dumps(now_told), reply_token=None, reply_told=None)

    # -- plumbing -----------------------------------------------------------------------------
    def _slot(self, row: MessageRow) -> None:
        for _ in range(3):
            wait = self.pacer.acquire(row.channel)
            if wait <= 0:
                return
            if wait > SHORT_WAIT:
                self._defer(row, wait, None)
            time.sleep(wait)
        self._defer(row, self.pacer.interval, None)

    def _call(
        self,
        row: MessageRow,
        method: str,
        fn: Callable[..., Any],
        *args: Any,
        unsure_keeps: str | None = None,
    ) -> Any:
        try:
            result = fn(*args)
        except DeliveryError as exc:
            self.stats.count("slack_calls", (method, exc.outcome))
            self.stats.count("slack_errors", (method, metric_code(exc.code)))
            if not isinstance(exc, MaybeSent):
                self._refused(row, method, exc)
            if exc.outcome == "rate_limited":
                self.pacer.hold(row.channel, exc.retry_after or 1.0)
                delay = exc.retry_after or 1.0
            else:
                delay = min(2.0 ** min(row.tries, 8), 300.0)
                if row.tries == 0:
                    log.warning("slack %s for %s failed: %s", method, row.key, exc)
            keep = isinstance(exc, MaybeSent)
            clear = {} if keep or unsure_keeps is None else {f"{unsure_keeps}_token": None}
            self._defer(row, delay, f"{method}: {exc}", **clear)
        self.stats.count("slack_calls", (method, "ok"))
        return result

    def _refused(self, row: MessageRow, method: str, exc: DeliveryError) -> None:
        """Slack said no for good (`refusals`): move the message to the team's next fallback
        channel, or hold it (the token: all delivery) for `hold` seconds. Returns only for
        errors that pass (retried with backoff by the caller)."""
        refusal = refusal_of(exc.code)
        if refusal == "transient":
            if exc.code == "message_not_found" and method == "chat.update":
                # Deleted in Slack: post it again where it was.
                log.warning("message %s was deleted in Slack; posting it again", row.key)
                self._defer(row, 0.0, f"{method}: {exc}", ts=None, shown=None, done_rev=-1)
            return
        error = f"{method}: {exc.code}"
        if refusal == "token":
            self.paused_until = max(self.paused_until, self.clock() + self.hold)
            self.stats.count("delivery_held", "token")
            log.error(
                "Slack refuses the bot token (%s): delivery paused %.0f s", exc.code, self.hold
            )
            self._defer(row, self.hold, error)
        if refusal == "permanent":
            self.stats.count("delivery_held", "permanent")
            log.error("Slack refuses %s (%s): next try in %.0f s", row.key, exc.code, self.hold)
            self._defer(row, self.hold, error)
        target = next_channel(
            row.channel, fallback_chain(row.team, self.ctx.catalog, self.ctx.fallback_channel)
        )
        if target is None:
            self.stats.count("delivery_held", "no_fallback")
            log.error("Slack refuses %s, the last fallback (%s)", row.channel, exc.code)
            self._defer(row, self.hold, error)
        self.stats.count("messages_moved", (row.team, metric_code(exc.code)))
        log.warning("Slack refuses %s (%s): %s moves to %s", row.channel, exc.code, row.key, target)
        self._defer(
            row,
            0.0,
            error,
            channel=target,
            channel_id=None,
            ts=None,
            thread_of=None,
            shown=None,
            told=None,
            done_rev=-1,
            post_token=None,
            post_at=None,
            reply_token=None,
            reply_at=None,
            reply_told=None,
            moved_from=row.moved_from or row.channel,
            moved_code=exc.code[:100],
        )

    def _defer(self, row: MessageRow, seconds: float, error: str | None, **values: Any) -> NoReturn:
        self.outbox.defer(row, self.clock() + seconds, error, **values)
        raise Deferred
