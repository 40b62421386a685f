"""The router's state DB: load what a decision needs, write what it changed, in one transaction.

Decisions (webhooks, buttons, timers) are serialized: a process lock plus SQLite's write lock,
or a PostgreSQL advisory transaction lock shared by every replica. Each is a few small
statements, so serializing them costs little and makes "one open incident per key" and
"no step fires twice" plain facts. Delivery, the slow part, runs outside them (`outbox`).

On PostgreSQL the connections are in autocommit and a decision sends its own BEGIN, with its
locks in the same round trip: a webhook is seven round trips (BEGIN and locks, two reads, up to
three writes, COMMIT), committed before it is answered. Reads and the delivery worker's single
statements need no transaction around them.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    and_,
    func,
    insert,
    select,
    update,
)

from impactwatch.router.model import AlertState, Changes, Incident, View
from impactwatch.router.statements import (
    ALERTS_BY_FP,
    ALERTS_OF,
    ALERTS_OF_GROUP,
    CHUNK,
    INCIDENT_FIELDS,
    INCIDENTS,
    OPEN_INCIDENTS,
    UPDATE_ALERT,
    UPDATE_INCIDENT,
    VIEW_ALERTS,
    VIEW_INCIDENTS,
    alert_from_row,
    alert_values,
    chunks,
    insert_new,
    lock_id,
    many,
    read_incident,
)
from impactwatch.router.tables import (
    alert_t,
    create_or_upgrade,
    digest_item_t,
    feedback_t,
    incident_t,
    make_engine,
    message_t,
)


class RouterStore:
    def __init__(self, url_or_engine: str | Engine) -> None:
        self.engine = (
            make_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
        )
        if self.engine.dialect.name not in ("sqlite", "postgresql"):
            raise ValueError(
                f"state DB {self.engine.dialect.name!r}: use sqlite:/// or postgresql+psycopg://"
            )
        self.sqlite = self.engine.dialect.name == "sqlite"
        if not self.sqlite and not isinstance(url_or_engine, str):
            # Transactions are explicit (`decide`); everything else is one statement at a time.
            # (`make_engine` sets this once per connection; here it is set at each checkout.)
            self.engine = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        # SQLite has one writer; waiting on a lock here is cheaper than its busy loop.
        self._write_lock: contextlib.AbstractContextManager[Any] = (
            threading.RLock() if self.sqlite else contextlib.nullcontext()
        )
        create_or_upgrade(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction (on PostgreSQL: a decision that takes no lock)."""
        if not self.sqlite:
            with self.decide(()) as conn:
                yield conn
            return
        with self._write_lock, self.engine.connect() as conn:
            conn = conn.execution_options(iw_write=True)
            with conn.begin():
                yield conn

    @contextlib.contextmanager
    def statement(self) -> Iterator[Connection]:
        """For one write statement, committed on its own. PostgreSQL: autocommit, so no BEGIN
        and COMMIT round trips around it (the delivery worker's claims and bookkeeping)."""
        if self.sqlite:
            with self.write() as conn:
                yield conn
            return
        with self.engine.connect() as conn:
            yield conn

    @contextlib.contextmanager
    def decide(self, locks: Iterable[str] = ("*",)) -> Iterator[Connection]:
        """A write transaction that no other decision about the same `locks` (lineage
        components, of any replica) runs beside. SQLite has one writer anyway; PostgreSQL takes
        one advisory transaction lock per name, in order (no deadlock between decisions).

        On PostgreSQL, BEGIN and the locks go in one round trip (the simple query protocol
        takes several statements; the lock ids are integers we computed), and COMMIT ends it:
        still one transaction, committed before the caller answers."""
        if self.sqlite:
            with self.write() as conn:
                yield conn
            return
        ids = sorted({lock_id(name) for name in locks})
        begin = "; ".join(["BEGIN", *(f"SELECT pg_advisory_xact_lock({n})" for n in ids)])
        with self.engine.connect() as conn:
            conn.exec_driver_sql(begin)
            try:
                yield conn
            except BaseException:
                try:
                    conn.rollback()  # the driver sends ROLLBACK: a transaction is open
                except Exception:
                    conn.invalidate()
                raise
            conn.exec_driver_sql("COMMIT")

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        """Reads. PostgreSQL: autocommit (READ COMMITTED gives each statement its own snapshot
        inside a transaction too, so BEGIN and COMMIT would only cost two round trips)."""
        if self.sqlite:
            with self.engine.connect() as conn, conn.begin():
                yield conn
            return
        with self.engine.connect() as conn:
            yield conn

    # -- loading ------------------------------------------------------------------------------
    def load_view(
        self,
        conn: Connection,
        fingerprints: Iterable[str] = (),
        keys: Iterable[str] = (),
        incident_ids: Iterable[str] = (),
        group: str | None = None,
    ) -> View:
        """The alerts named and those last seen in Alertmanager's `group`, the open incidents
        of `keys`, the incidents named, and every incident those lead to (merges), each with
        all of its alerts and its outbox keys."""
        view = View()
        fps, key_list = sorted(set(fingerprints)), sorted(set(keys))
        named = sorted(set(incident_ids))
        alert_rows: list[Any] = []
        if len(fps) + len(key_list) + len(named) <= CHUNK:
            params = {"fps": fps, "keys": key_list, "ids": named, "group": group or None}
            for row in conn.execute(VIEW_INCIDENTS, params):
                read_incident(view, row)
            alert_rows.extend(conn.execute(VIEW_ALERTS, params))
        else:  # a very large notification: the same, in chunks the drivers take
            if group:
                alert_rows.extend(conn.execute(ALERTS_OF_GROUP, {"group": group}))
            for chunk in chunks(fps):
                alert_rows.extend(conn.execute(ALERTS_BY_FP, {"fps": chunk}))
            named = sorted({*named, *(r.incident_id for r in alert_rows if r.incident_id)})
            for chunk in chunks(named):
                for row in conn.execute(INCIDENTS, {"ids": chunk}):
                    read_incident(view, row)
            for chunk in chunks(key_list):
                for row in conn.execute(OPEN_INCIDENTS, {"keys": chunk}):
                    read_incident(view, row)
            for chunk in chunks(sorted(view.incidents)):
                alert_rows.extend(conn.execute(ALERTS_OF, {"ids": chunk}))
        self._add_alerts(view, alert_rows)
        # Merged incidents lead to the incident they were folded into (rare: a lineage fold).
        todo = {i.merged_into for i in view.incidents.values() if i.merged_into}
        while todo := todo - set(view.incidents):
            found = sorted(todo)
            for chunk in chunks(found):
                for row in conn.execute(INCIDENTS, {"ids": chunk}):
                    read_incident(view, row)
                self._add_alerts(view, list(conn.execute(ALERTS_OF, {"ids": chunk})))
            todo = {
                target
                for i in found
                if i in view.incidents and (target := view.incidents[i].merged_into)
            }
        view.stored = set(view.alerts)
        view.seal()
        return view

    @staticmethod
    def _add_alerts(view: View, rows: Iterable[Any]) -> None:
        for row in rows:
            alert = view.alerts.get(row.fingerprint)
            if alert is None:
                alert = view.alerts[row.fingerprint] = alert_from_row(row)
            incident = view.incidents.get(row.incident_id) if row.incident_id else None
            if incident is not None:
                incident.alerts[row.fingerprint] = alert

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
                [{"fingerprint": a.fingerprint, **alert_values(a, now)} for a in new_alerts],
            )
        if old_alerts:
            many(
                conn,
                UPDATE_ALERT,
                [{"_k": a.fingerprint, **alert_values(a, now)} for a in old_alerts],
            )
        for alert in changes.alerts:
            alert.dirty = False
        self.save_incidents(conn, [i for i in view.incidents.values() if i.dirty])
        self._digest_items(conn, changes.alerts)

    def save_incidents(self, conn: Connection, incidents: Iterable[Incident]) -> None:
        new, old = [], []
        for incident in incidents:
            values = {f: getattr(incident, f) for f in INCIDENT_FIELDS}
            if incident.new:
                new.append({"id": incident.id, **values})
            else:
                old.append({"_k": incident.id, **values})
            incident.new = incident.dirty = False
        if new:
            conn.execute(insert(incident_t), new)
        if old:
            many(conn, UPDATE_INCIDENT, old)

    def _digest_items(self, conn: Connection, alerts: Iterable[AlertState]) -> None:
        """A held warning's digest item: added once, then kept up to date (no reads)."""
        for alert in alerts:
            if not (alert.held or alert.was_held):
                continue
            key = f"{alert.fingerprint}@{alert.starts_at:.3f}"
            if alert.held:
                conn.execute(
                    insert_new(conn, digest_item_t, "k").values(
                        k=key,
                        team=alert.team,
                        alertname=alert.alertname,
                        subject_key=alert.subject_key,
                        starts_at=alert.starts_at,
                        ended_at=alert.ends_at,
                    )
                )
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
        for chunk in chunks(list(keys)):
            conn.execute(
                update(digest_item_t).where(digest_item_t.c.k.in_(chunk)).values(digested_at=now)
            )

    # -- numbers for /metrics -----------------------------------------------------------------
    def open_view(self, conn: Connection, limit: int = 1000) -> View:
        """Open incidents (at most `limit`, the newest) with their alerts: for the digest's
        ranking and `impactwatch incidents`."""
        ids = conn.scalars(
            select(incident_t.c.id)
            .where(incident_t.c.status == "open")
            .order_by(incident_t.c.opened_at.desc())
            .limit(limit)
        )
        return self.load_view(conn, incident_ids=list(ids))

    def open_incidents(self) -> dict[tuple[str, str], int]:
        with self.read() as conn:
            rows = conn.execute(
                select(incident_t.c.team, incident_t.c.severity, func.count())
                .where(incident_t.c.status == "open")
                .group_by(incident_t.c.team, incident_t.c.severity)
            )
            return {(r[0], r[1]): int(r[2]) for r in rows}

    def outbox_depth(self, now: float) -> tuple[int, float]:
        """(messages waiting to be delivered, age in seconds of the oldest of them since it
        first wanted delivery: backoffs and holds that move its due time do not hide it)."""
        with self.read() as conn:
            pending = and_(message_t.c.due_at.is_not(None), message_t.c.cancelled.is_(False))
            since = func.coalesce(message_t.c.pending_since, message_t.c.due_at)
            count, oldest = conn.execute(select(func.count(), func.min(since)).where(pending)).one()
            return int(count), max(now - oldest, 0.0) if oldest is not None else 0.0
