"""The router's state DB: load what a decision needs, write what it changed, in one transaction.

Decisions (webhooks, buttons, timers) are serialized: a process lock plus SQLite's write lock,
or a PostgreSQL advisory transaction lock shared by every replica. Each is a few small
statements, so serializing them costs little and makes "one open incident per key" and
"no step fires twice" plain facts. Delivery, the slow part, runs outside them (`outbox`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    Connection,
    Engine,
    and_,
    bindparam,
    func,
    insert,
    or_,
    select,
    update,
)

from impactwatch.router.incidents import AlertState, Changes, Incident, View
from impactwatch.router.tables import (
    alert_t,
    digest_item_t,
    feedback_t,
    incident_t,
    make_engine,
    message_t,
    metadata,
)

_ADVISORY = select(func.pg_advisory_xact_lock(bindparam("k", type_=BigInteger)))
_CHUNK = 500
_INCIDENT_FIELDS = (
    "key",
    "team",
    "status",
    "severity",
    "opened_at",
    "resolved_at",
    "acked_by",
    "acked_at",
    "snoozed_until",
    "snoozed_by",
    "escalated",
    "escalated_at",
    "next_escalation_at",
    "merged_into",
    "rev",
)


_ALERT_COLUMNS = (
    "alertname", "subject_key", "team", "severity", "kind", "status", "starts_at", "ends_at",
    "labels", "annotations", "generator_url", "owner_note", "incident_id", "held", "updated_at",
)  # fmt: skip
# Statements built once: SQLAlchemy then reuses their compiled form (the hot path is a webhook).
_ALERTS_BY_FP = select(alert_t).where(alert_t.c.fingerprint.in_(bindparam("ids", expanding=True)))
_ALERTS_OF = select(alert_t).where(alert_t.c.incident_id.in_(bindparam("ids", expanding=True)))
_INCIDENTS = select(incident_t).where(incident_t.c.id.in_(bindparam("ids", expanding=True)))
_OPEN_OR_NAMED = select(incident_t).where(
    or_(
        and_(
            incident_t.c.key.in_(bindparam("keys", expanding=True)),
            incident_t.c.status == "open",
        ),
        incident_t.c.id.in_(bindparam("ids", expanding=True)),
    )
)
_UPDATE_ALERT = (
    update(alert_t)
    .where(alert_t.c.fingerprint == bindparam("_k"))
    .values({c: bindparam(c) for c in _ALERT_COLUMNS})
)
_UPDATE_INCIDENT = (
    update(incident_t)
    .where(incident_t.c.id == bindparam("_k"))
    .values({c: bindparam(c) for c in _INCIDENT_FIELDS})
)


def _lock_id(name: str) -> int:
    """A stable signed 64-bit advisory lock id for a name (same in every replica)."""
    digest = hashlib.blake2b(f"impactwatch-router:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def alert_from_row(row: Any) -> AlertState:
    return AlertState(
        fingerprint=row.fingerprint,
        alertname=row.alertname,
        subject_key=row.subject_key,
        team=row.team,
        severity=row.severity,
        kind=row.kind,
        status=row.status,
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        labels=json.loads(row.labels),
        annotations=json.loads(row.annotations),
        generator_url=row.generator_url or "",
        owner_note=row.owner_note,
        incident_id=row.incident_id,
        held=bool(row.held),
        was_held=bool(row.held),
    )


def incident_from_row(row: Any) -> Incident:
    return Incident(id=row.id, **{f: getattr(row, f) for f in _INCIDENT_FIELDS})


def _alert_values(alert: AlertState, now: float) -> dict[str, Any]:
    return {
        "alertname": alert.alertname,
        "subject_key": alert.subject_key,
        "team": alert.team,
        "severity": alert.severity,
        "kind": alert.kind,
        "status": alert.status,
        "starts_at": alert.starts_at,
        "ends_at": alert.ends_at,
        "labels": json.dumps(alert.labels, sort_keys=True),
        "annotations": json.dumps(alert.annotations, sort_keys=True),
        "generator_url": alert.generator_url,
        "owner_note": alert.owner_note,
        "incident_id": alert.incident_id,
        "held": alert.held,
        "updated_at": now,
    }


class RouterStore:
    def __init__(self, url_or_engine: str | Engine) -> None:
        self.engine = (
            make_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
        )
        self.sqlite = self.engine.dialect.name == "sqlite"
        # SQLite has one writer; waiting on a lock here is cheaper than its busy loop.
        self._write_lock: contextlib.AbstractContextManager[Any] = (
            threading.RLock() if self.sqlite else contextlib.nullcontext()
        )
        metadata.create_all(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        with self._write_lock, self.engine.connect() as conn:
            conn = conn.execution_options(iw_write=True)
            with conn.begin():
                yield conn

    @contextlib.contextmanager
    def decide(self, locks: Iterable[str] = ("*",)) -> Iterator[Connection]:
        """A write transaction that no other decision about the same `locks` (lineage
        components, of any replica) runs beside. SQLite has one writer anyway; PostgreSQL takes
        one advisory transaction lock per name, in order (no deadlock between decisions)."""
        with self.write() as conn:
            if not self.sqlite:
                for name in sorted(set(locks)):
                    conn.execute(_ADVISORY, {"k": _lock_id(name)})
            yield conn

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn, conn.begin():
            yield conn

    # -- loading ------------------------------------------------------------------------------
    def load_view(
        self,
        conn: Connection,
        fingerprints: Iterable[str] = (),
        keys: Iterable[str] = (),
        incident_ids: Iterable[str] = (),
    ) -> View:
        """The alerts named, the open incidents of `keys`, the incidents named, and every
        incident those lead to (merges), each with all of its alerts."""
        view = View()
        fps = sorted(set(fingerprints))
        for chunk in _chunks(fps):
            for row in conn.execute(_ALERTS_BY_FP, {"ids": chunk}):
                view.alerts[row.fingerprint] = alert_from_row(row)
        named = sorted(
            set(incident_ids) | {a.incident_id for a in view.alerts.values() if a.incident_id}
        )
        key_list = sorted(set(keys))
        if len(named) + len(key_list) <= _CHUNK:
            params = {"keys": key_list or [""], "ids": named or [""]}
            for row in conn.execute(_OPEN_OR_NAMED, params):
                view.incidents[row.id] = incident_from_row(row)
        else:
            view.incidents.update(self._incidents(conn, named))
            for chunk in _chunks(key_list):
                params = {"keys": list(chunk), "ids": [""]}
                for row in conn.execute(_OPEN_OR_NAMED, params):
                    view.incidents[row.id] = incident_from_row(row)
        todo = {i.merged_into for i in view.incidents.values() if i.merged_into}
        while todo := todo - set(view.incidents):
            found = self._incidents(conn, sorted(todo))
            view.incidents.update(found)
            todo = {i.merged_into for i in found.values() if i.merged_into}
        ids = sorted(view.incidents)
        for chunk in _chunks(ids):
            for row in conn.execute(_ALERTS_OF, {"ids": chunk}):
                alert = view.alerts.get(row.fingerprint) or alert_from_row(row)
                view.alerts[row.fingerprint] = alert
                incident = view.incidents.get(row.incident_id)
                if incident is not None:
                    incident.alerts[row.fingerprint] = alert
        view.stored = set(view.alerts)
        view.seal()
        return view

    def _incidents(self, conn: Connection, ids: Sequence[str]) -> dict[str, Incident]:
        out = {}
        for chunk in _chunks(ids):
            for row in conn.execute(_INCIDENTS, {"ids": chunk}):
                out[row.id] = incident_from_row(row)
        return out

    def load_incident(self, conn: Connection, incident_id: str) -> Incident | None:
        view = self.load_view(conn, incident_ids=[incident_id])
        return view.incidents.get(incident_id)

    def due_escalations(
        self, conn: Connection, now: float, limit: int = 200
    ) -> list[tuple[str, str]]:
        """(id, key) of open incidents whose next escalation step is due."""
        rows = conn.execute(
            select(incident_t.c.id, incident_t.c.key)
            .where(incident_t.c.status == "open", incident_t.c.next_escalation_at <= now)
            .order_by(incident_t.c.next_escalation_at)
            .limit(limit)
        )
        return [(r.id, r.key) for r in rows]

    def incident_key(self, conn: Connection, incident_id: str) -> str | None:
        return conn.execute(
            select(incident_t.c.key).where(incident_t.c.id == incident_id)
        ).scalar_one_or_none()

    # -- writing ------------------------------------------------------------------------------
    def save(self, conn: Connection, view: View, changes: Changes, now: float) -> None:
        """Alerts, incidents and digest items a decision changed (messages: `outbox`)."""
        stored = view.stored
        new_alerts = [a for a in changes.alerts if a.fingerprint not in stored]
        old_alerts = [a for a in changes.alerts if a.fingerprint in stored]
        if new_alerts:
            conn.execute(
                insert(alert_t),
                [{"fingerprint": a.fingerprint, **_alert_values(a, now)} for a in new_alerts],
            )
        if old_alerts:
            conn.execute(
                _UPDATE_ALERT, [{"_k": a.fingerprint, **_alert_values(a, now)} for a in old_alerts]
            )
        for alert in changes.alerts:
            alert.dirty = False
        self.save_incidents(conn, [i for i in view.incidents.values() if i.dirty])
        self._digest_items(conn, changes.alerts)

    def save_incidents(self, conn: Connection, incidents: Iterable[Incident]) -> None:
        new, old = [], []
        for incident in incidents:
            values = {f: getattr(incident, f) for f in _INCIDENT_FIELDS}
            if incident.new:
                new.append({"id": incident.id, **values})
            else:
                old.append({"_k": incident.id, **values})
            incident.new = incident.dirty = False
        if new:
            conn.execute(insert(incident_t), new)
        if old:
            conn.execute(_UPDATE_INCIDENT, old)

    def _digest_items(self, conn: Connection, alerts: Iterable[AlertState]) -> None:
        for alert in alerts:
            if not (alert.held or alert.was_held):
                continue
            key = f"{alert.fingerprint}@{alert.starts_at:.3f}"
            row = conn.execute(select(digest_item_t.c.k).where(digest_item_t.c.k == key)).first()
            if alert.held and row is None:
                conn.execute(
                    insert(digest_item_t).values(
                        k=key,
                        team=alert.team,
                        alertname=alert.alertname,
                        subject_key=alert.subject_key,
                        starts_at=alert.starts_at,
                        ended_at=alert.ends_at,
                    )
                )
            elif row is not None:
                conn.execute(
                    update(digest_item_t)
                    .where(digest_item_t.c.k == key)
                    .values(ended_at=alert.ends_at, became_incident=not alert.held)
                )

    def add_feedback(
        self, conn: Connection, incident: Incident, user_id: str, now: float
    ) -> list[tuple[str, str]]:
        """Record "not actionable" once per incident, rule and user; the (rule, team) counted."""
        counted = []
        for alertname, team in sorted({(a.alertname, a.team) for a in incident.alerts.values()}):
            seen = conn.execute(
                select(feedback_t.c.id).where(
                    feedback_t.c.incident_id == incident.id,
                    feedback_t.c.alertname == alertname,
                    feedback_t.c.user_id == user_id,
                )
            ).first()
            if seen is None:
                conn.execute(
                    insert(feedback_t).values(
                        incident_id=incident.id,
                        alertname=alertname,
                        team=team,
                        user_id=user_id,
                        at=now,
                    )
                )
                counted.append((alertname, team))
        return counted

    # -- digest -------------------------------------------------------------------------------
    def digest_items(self, conn: Connection, team: str, until: float) -> list[dict[str, Any]]:
        """Held warnings of `team` that started by `until`, never digested, never incidents."""
        rows = conn.execute(
            select(digest_item_t)
            .where(
                digest_item_t.c.team == team,
                digest_item_t.c.starts_at <= until,
                digest_item_t.c.digested_at.is_(None),
                digest_item_t.c.became_incident.is_(False),
            )
            .order_by(digest_item_t.c.starts_at)
        )
        return [dict(r._mapping) for r in rows]

    def mark_digested(self, conn: Connection, keys: Sequence[str], now: float) -> None:
        for chunk in _chunks(list(keys)):
            conn.execute(
                update(digest_item_t).where(digest_item_t.c.k.in_(chunk)).values(digested_at=now)
            )

    # -- numbers for /metrics -----------------------------------------------------------------
    def open_incidents(self) -> dict[tuple[str, str], int]:
        with self.read() as conn:
            rows = conn.execute(
                select(incident_t.c.team, incident_t.c.severity, func.count())
                .where(incident_t.c.status == "open")
                .group_by(incident_t.c.team, incident_t.c.severity)
            )
            return {(r[0], r[1]): int(r[2]) for r in rows}

    def outbox_depth(self, now: float) -> tuple[int, float]:
        """(messages waiting to be delivered, age in seconds of the oldest due one)."""
        with self.read() as conn:
            pending = and_(message_t.c.due_at.is_not(None), message_t.c.cancelled.is_(False))
            count = conn.execute(select(func.count()).where(pending)).scalar_one()
            oldest = conn.execute(
                select(func.min(message_t.c.due_at)).where(pending, message_t.c.due_at <= now)
            ).scalar_one()
            return int(count), max(now - oldest, 0.0) if oldest is not None else 0.0
