"""The router service: decisions in one transaction each, delivery and timers in threads.

`handle` (a webhook), `act` (a button) and `tick` (escalation and digest timers) each load what
they need, run the pure decision, and commit the incident changes with their outbox rows in one
transaction; the delivery worker is woken and does the slow part.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from impactwatch.catalog.model import Catalog
from impactwatch.router import outbox
from impactwatch.router.delivery import DeliveryWorker
from impactwatch.router.failures import FailureSource
from impactwatch.router.impact import ranked
from impactwatch.router.incidents import Decider, teams_with_digest
from impactwatch.router.metrics import RouterStats
from impactwatch.router.model import Action, Changes, View
from impactwatch.router.notices import render_digest
from impactwatch.router.payload import Notification
from impactwatch.router.render import Links, RenderContext
from impactwatch.router.settings import RouterSettings
from impactwatch.router.sinks import ConsoleSink, Sink, SlackSink
from impactwatch.router.store import RouterStore
from impactwatch.router.tables import MIGRATIONS, message_t

log = logging.getLogger(__name__)


def make_sink(settings: RouterSettings, stats: RouterStats) -> Sink:
    """Slack when a bot token is set; else the console and a JSON Lines file."""
    if settings.slack_bot_token is not None and settings.slack_bot_token.get_secret_value():
        return SlackSink(
            settings.slack_bot_token.get_secret_value(),
            settings.slack_api_url,
            settings.slack_timeout,
            on_429=lambda method: stats.count("slack_calls", (method, "rate_limited")),
        )
    return ConsoleSink(settings.jsonl_path)


def make_failure_source(settings: RouterSettings, stats: RouterStats) -> FailureSource | None:
    """The collector's failure details when its URL is set (router/failures.py)."""
    if not settings.collector_url:
        return None
    return FailureSource(
        settings.collector_url,
        settings.collector_timeout,
        count=lambda outcome: stats.count("failure_lookups", outcome),
    )


class RouterService:
    def __init__(
        self,
        settings: RouterSettings,
        catalog: Catalog,
        *,
        store: RouterStore | None = None,
        sink: Sink | None = None,
        stats: RouterStats | None = None,
        clock: Callable[[], float] = time.time,
        new_id: Callable[[], str] | None = None,
        owner: str | None = None,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.clock = clock
        self.stats = stats or RouterStats()
        if store is None and not settings.migrate_on_start:
            MIGRATIONS.require_head(settings.state_db)  # else the store upgrades it
        self.store = store or RouterStore(settings.state_db)
        self.decider = Decider(
            catalog, new_id or (lambda: uuid.uuid4().hex[:16]), teams_with_digest(catalog)
        )
        self.ctx = RenderContext(
            catalog,
            Links(settings.grafana_url, settings.grafana_dashboard, settings.airflow_url),
            settings.fallback_channel,
            snooze_seconds=settings.snooze_seconds,
        )
        self.sink = sink or make_sink(settings, self.stats)
        self.failures = make_failure_source(settings, self.stats)
        self.worker = DeliveryWorker(
            self.store,
            self.sink,
            self.ctx,
            self.stats,
            owner=owner,
            lease=settings.lease_seconds,
            channel_interval=settings.channel_interval,
            threads=settings.delivery_workers,
            hold=settings.slack_hold_seconds,
            clock=clock,
            failures=self.failures.report if self.failures is not None else None,
        )
        self._stop = threading.Event()
        self._timer: threading.Thread | None = None

    # -- decisions ----------------------------------------------------------------------------
    def _plan(self, conn: Any, changes: Changes, view: View, now: float) -> int:
        outbox.adopt_merges(conn, changes, view.incidents, now, view.messages)
        return outbox.plan(
            conn,
            changes,
            view.incidents,
            now,
            self.settings.settle_seconds,
            self.ctx.channel_of,
            self.decider.steps_of,
            view.messages,
        )

    def handle(self, notification: Notification) -> dict[str, Any]:
        """One Alertmanager notification, decided and committed (with its outbox rows)."""
        now = self.clock()
        keys = self.decider.keys_for(notification)
        fingerprints = [a.fingerprint for a in notification.alerts]
        with self.store.decide(self.decider.locks_for(notification)) as conn:
            view = self.store.load_view(conn, fingerprints, keys, group=notification.group_key)
            changes = self.decider.apply(view, notification, now)
            self.store.save(conn, view, changes, now)
            added = self._plan(conn, changes, view, now)
        for outcome, n in changes.outcomes.items():
            self.stats.count("alerts", outcome, n)
        self._count_escalations(changes, view.incidents)
        if changes.incidents or added:
            self.worker.wake.set()
        return {
            "alerts": changes.outcomes,
            "incidents": sorted({i.id for i in changes.incidents}),
        }

    def act(self, action: Action) -> str:
        """A button press; returns the outcome counted in the interactions metric."""
        now = self.clock()
        with self.store.read() as conn:
            key = self.store.incident_key(conn, action.incident_id)
        if key is None:
            return "unknown_incident"
        with self.store.decide([self.decider.lock_for_key(key)]) as conn:
            view = self.store.load_view(conn, incident_ids=[action.incident_id])
            incident = self.decider.live(view, action.incident_id)
            if incident is None:
                return "unknown_incident"
            if action.kind == "not_actionable":
                for rule, team in self.store.add_feedback(conn, incident, action.user_id, now):
                    self.stats.count("not_actionable", (rule, team))
                return "ok"
            if action.kind == "ack":
                changed = self.decider.acknowledge(incident, action.user_id, now)
            else:
                changed = self.decider.snooze(
                    incident, action.user_id, now, self.settings.snooze_seconds
                )
            if not changed:
                return "noop"
            changes = Changes()
            self.decider.finish(view, incident, changes)
            self.store.save_incidents(conn, [incident])
            self._plan(conn, changes, view, now)
        self.worker.wake.set()
        return "ok"

    def tick(self) -> None:
        """Fire due escalation steps (each incident in its own decision), then due digests."""
        now = self.clock()
        with self.store.read() as conn:
            due = self.store.due_escalations(conn, now)
        for incident_id, key in due:
            with self.store.decide([self.decider.lock_for_key(key)]) as conn:
                view = self.store.load_view(conn, incident_ids=[incident_id])
                incident = view.incidents.get(incident_id)
                if incident is None or incident.status != "open":
                    continue  # resolved, or another replica got there first
                if incident.next_escalation_at is None or incident.next_escalation_at > now:
                    continue
                changes = Changes()
                self.decider.escalate(view, incident, now, changes)
                self.store.save_incidents(conn, changes.incidents)
                self._plan(conn, changes, view, now)
            self._count_escalations(changes, view.incidents)
            self.worker.wake.set()
        self._digests(now)

    def _count_escalations(self, changes: Changes, incidents: dict[str, Any]) -> None:
        for incident_id, _step in changes.escalations:
            self.stats.count("escalations", incidents[incident_id].team)

    def _digests(self, now: float) -> None:
        teams = sorted(self.decider.digest_teams)
        if not teams:
            return
        at = self.settings.digest_time()
        latest = at.next_after(_utc(now) - timedelta(days=1))
        if latest.timestamp() > now:
            latest = at.next_after(_utc(now) - timedelta(days=2))
        day = latest.date().isoformat()
        since = latest.timestamp() - 86400
        open_now: list[tuple[Any, Any]] | None = None  # loaded once a digest is due
        for team in teams:
            key = f"digest:{team}:{day}"
            with self.store.decide([f"digest:{team}"]) as conn:
                done = conn.execute(select(message_t.c.id).where(message_t.c.key == key)).first()
                if done is not None:
                    continue
                items = self.store.digest_items(conn, team, latest.timestamp())
                if open_now is None:
                    view = self.store.open_view(conn)
                    open_now = ranked(self.catalog, self.ctx.lineage, view.incidents.values())
                touching = [(i, m) for i, m in open_now if i.team == team or team in m.teams]
                row: dict[str, Any] = {
                    "incident_id": None,
                    "role": "digest",
                    "team": team,
                    "channel": self.ctx.channel_of(team),
                    "wanted_rev": 0,
                    "updatable": False,
                }
                if items or touching:
                    rendered = render_digest(self.ctx, team, items, since, now, touching[:10])
                    payload = {"text": rendered.text, "blocks": rendered.blocks}
                    row.update(payload=json.dumps(payload), due_at=now)
                else:
                    row.update(cancelled=True, due_at=None)  # "done for the day", nothing to say
                outbox.add(conn, {key: row}, now)
                self.store.mark_digested(conn, [i["k"] for i in items], now)
            if items or touching:
                self.stats.count("digests", team)
                self.worker.wake.set()

    # -- lifecycle ----------------------------------------------------------------------------
    def load_user_groups(self) -> None:
        """Let catalog mentions by handle ("@risk-oncall") ping: look the ids up once."""
        lookup = getattr(self.sink, "user_groups", None)
        if lookup is None:
            return
        try:
            self.ctx.groups = lookup()
        except Exception as exc:  # no usergroups:read scope: handles stay plain text
            log.warning("cannot list Slack user groups (%s); @handles will not ping", exc)

    def start(self) -> None:
        self.load_user_groups()
        self.worker.start()
        self._timer = threading.Thread(target=self._timers, name="iw-timers", daemon=True)
        self._timer.start()

    def _timers(self) -> None:
        while not self._stop.wait(self.settings.tick_seconds):
            try:
                self.tick()
            except Exception as exc:  # the DB went away: the next tick tries again
                reason = self.stats.store_failed("timers", exc)
                log.warning("timers (%s): %s", reason, type(exc).__name__)

    def stop(self) -> None:
        self._stop.set()
        if self._timer is not None:
            self._timer.join(10)
        self.worker.stop()

    def close(self) -> None:
        self.stop()
        if self.failures is not None:
            self.failures.close()
        self.store.close()


def _utc(epoch: float) -> Any:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, UTC)
