"""The outbox: one row per Slack message the router owns, delivered asynchronously.

A decision names the messages an incident needs and bumps their wanted revision in the same
transaction as the incident; the delivery worker renders the incident as it is *then*, so many
changes between two deliveries collapse into one `chat.update`. Rows are claimed with a lease
(`FOR UPDATE SKIP LOCKED` on PostgreSQL), so two replicas never deliver the same row at once;
the live worker renews its leases, so a crashed one's rows are free again within one lease.
A post whose outcome is unknown keeps its token until the worker has looked for it in Slack.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, case, func, or_, select, update

from impactwatch.catalog.model import EscalationStep
from impactwatch.router.model import Changes, Incident
from impactwatch.router.statements import insert_new, many
from impactwatch.router.store import RouterStore
from impactwatch.router.tables import message_t

_BUMP = (
    update(message_t)
    .where(
        message_t.c.incident_id == bindparam("_k"),
        message_t.c.updatable.is_(True),
        message_t.c.cancelled.is_(False),
    )
    .values(
        wanted_rev=bindparam("rev"),
        due_at=func.coalesce(message_t.c.due_at, bindparam("now")),
        pending_since=func.coalesce(message_t.c.pending_since, bindparam("now")),
    )
)
_KEYS = select(message_t.c.key).where(message_t.c.key.in_(bindparam("keys", expanding=True)))
_NOT_BUSY = message_t.c.channel.not_in(bindparam("busy", expanding=True))
_NEXT_DUE = select(func.min(message_t.c.due_at)).where(
    message_t.c.cancelled.is_(False), message_t.c.due_at.is_not(None), _NOT_BUSY
)


@functools.cache
def _claim_statement(limit: int, sqlite: bool) -> Any:
    """Lease the oldest due rows of channels not busy, and return them (built once)."""
    now = bindparam("now")
    due = (
        select(message_t.c.id)
        .where(
            message_t.c.due_at <= now,
            message_t.c.cancelled.is_(False),
            or_(message_t.c.lease_until.is_(None), message_t.c.lease_until < now),
            _NOT_BUSY,
        )
        .order_by(message_t.c.due_at, message_t.c.id)
        .limit(limit)
    )
    if not sqlite:
        due = due.with_for_update(skip_locked=True)
    return (
        update(message_t)
        .where(message_t.c.id.in_(due.scalar_subquery()))
        .values(lease_until=bindparam("until"), lease_owner=bindparam("owner"))
        .returning(*message_t.c)
    )


@dataclass(frozen=True)
class MessageRow:
    id: int
    key: str
    incident_id: str | None
    role: str
    team: str
    channel: str
    channel_id: str | None
    thread_of: str | None
    updatable: bool
    payload: str | None
    ts: str | None
    wanted_rev: int
    done_rev: int
    shown: str | None
    told: str | None
    post_token: str | None
    post_at: float | None
    reply_token: str | None
    reply_at: float | None
    reply_told: str | None
    reply_text: str | None
    tries: int
    moved_from: str | None = None  # the channel Slack refused for good
    moved_code: str | None = None  # and its error code

    @classmethod
    def of(cls, row: Any) -> MessageRow:
        return cls(**{f: getattr(row, f) for f in cls.__dataclass_fields__})


def plan(
    conn: Connection,
    changes: Changes,
    incidents: dict[str, Incident],
    now: float,
    settle: float,
    channel_of: Callable[[str], str],
    steps_of: Callable[[str], Sequence[EscalationStep]],
    known: set[str] | None = None,
) -> int:
    """Bump the messages of changed incidents and add the ones they now need; returns how many
    rows were added. `known`: the outbox keys of `incidents` (`View.messages`), if loaded; then
    no query asks which exist. Merges: `adopt_merges` first."""
    if changes.incidents:
        many(conn, _BUMP, [{"_k": i.id, "rev": i.rev, "now": now} for i in changes.incidents])
    wanted: dict[str, dict[str, Any]] = {}
    for incident_id, role, team in sorted(changes.messages):
        incident = incidents[incident_id]
        wanted[f"{incident_id}:{role}"] = {
            "incident_id": incident_id,
            "role": role,
            "team": team,
            "channel": channel_of(team),
            "wanted_rev": incident.rev,
            "due_at": now + settle,
        }
    for incident_id, step in changes.escalations:
        incident = incidents[incident_id]
        steps = steps_of(incident.team)
        target = steps[step].channel if step < len(steps) else None
        row: dict[str, Any] = {
            "incident_id": incident_id,
            "role": f"escalation:{step}",
            "team": incident.team,
            "channel": target or channel_of(incident.team),
            "wanted_rev": incident.rev,
            "due_at": now,
        }
        if not target:  # no channel of its own: a reply in the incident's thread
            row.update(thread_of=f"{incident_id}:primary", updatable=False)
        wanted[f"{incident_id}:{row['role']}"] = row
    return add(conn, wanted, now, known)


def adopt_merges(
    conn: Connection,
    changes: Changes,
    incidents: dict[str, Incident],
    now: float,
    known: set[str] | None = None,
) -> None:
    """The messages of incidents folded by this decision become their root's (before `plan`)."""
    for folded, into in changes.merges:
        adopt(conn, folded, incidents[into], now, known)


def adopt(
    conn: Connection, folded: str, root: Incident, now: float, known: set[str] | None = None
) -> None:
    """A folded incident's messages become the root's in the same channels: the owner's
    message turns into the root incident's (same team) or its "affected" notice (other team),
    so a team never gets a second message for one problem."""
    rows = conn.execute(
        select(message_t.c.id, message_t.c.role, message_t.c.team).where(
            message_t.c.incident_id == folded, message_t.c.cancelled.is_(False)
        )
    ).all()
    for row in rows:
        if row.role != "primary" and not row.role.startswith("affected:"):
            continue
        role = "primary" if row.team == root.team else f"affected:{row.team}"
        key = f"{root.id}:{role}"
        taken = conn.execute(select(message_t.c.id).where(message_t.c.key == key)).first()
        if taken is not None:
            continue
        conn.execute(
            update(message_t)
            .where(message_t.c.id == row.id)
            .values(
                key=key,
                incident_id=root.id,
                role=role,
                wanted_rev=root.rev,
                done_rev=-1,
                due_at=func.coalesce(message_t.c.due_at, now),
                pending_since=func.coalesce(message_t.c.pending_since, now),
            )
        )
        if known is not None:
            known.add(key)


def add(
    conn: Connection,
    wanted: dict[str, dict[str, Any]],
    now: float,
    known: Collection[str] | None = None,
) -> int:
    """Insert the `wanted` rows that do not exist yet. `known`: the keys known to exist (then
    no query asks); a row that exists after all is skipped by the database, never doubled."""
    if not wanted:
        return 0
    existing = (
        set(known)
        if known is not None
        else {r.key for r in conn.execute(_KEYS, {"keys": list(wanted)})}
    )
    rows = [
        {
            "key": key,
            "created_at": now,
            "updatable": True,
            "done_rev": -1,
            "pending_since": now if values.get("due_at") is not None else None,
            **values,
        }
        for key, values in wanted.items()
        if key not in existing
    ]
    if rows:
        conn.execute(insert_new(conn, message_t, "key"), rows)
    return len(rows)


class Outbox:
    """Claims, leases and bookkeeping of message rows for the delivery worker."""

    def __init__(self, store: RouterStore, owner: str, lease: float) -> None:
        self.store = store
        self.owner = owner
        self.lease = lease

    def claim(self, now: float, limit: int = 1, busy: Collection[str] = ()) -> list[MessageRow]:
        """Lease up to `limit` due rows, oldest first, skipping channels in `busy` (this
        process may not send to them yet: claiming their rows would only put them back).
        One statement: the rows are leased as they are read, and no lock outlives it."""
        query = _claim_statement(limit, self.store.sqlite)
        params = {"now": now, "busy": sorted(busy), "until": now + self.lease, "owner": self.owner}
        with self.store.statement() as conn:
            rows = [MessageRow.of(r) for r in conn.execute(query, params)]
        return sorted(rows, key=lambda r: r.id)

    def renew(self, ids: Sequence[int], now: float) -> int:
        """Extend our leases of rows `ids` (a heartbeat); returns how many are still ours."""
        with self.store.statement() as conn:
            result = conn.execute(
                update(message_t)
                .where(message_t.c.id.in_(list(ids)), message_t.c.lease_owner == self.owner)
                .values(lease_until=now + self.lease)
            )
            return result.rowcount

    def next_due(self, busy: Collection[str] = ()) -> float | None:
        """When the next row is due (rows of `busy` channels aside)."""
        with self.store.read() as conn:
            return conn.execute(_NEXT_DUE, {"busy": sorted(busy)}).scalar_one()

    def parent(self, key: str) -> tuple[str, str | None] | None:
        """(ts, channel id) of the posted message `key`, or None while it is not posted."""
        with self.store.read() as conn:
            row = conn.execute(
                select(message_t.c.ts, message_t.c.channel_id).where(message_t.c.key == key)
            ).first()
        return (row.ts, row.channel_id) if row is not None and row.ts is not None else None

    def set(self, row: MessageRow, **values: Any) -> bool:
        """Update our leased row; False when the lease was lost to another replica."""
        with self.store.statement() as conn:
            result = conn.execute(
                update(message_t)
                .where(message_t.c.id == row.id, message_t.c.lease_owner == self.owner)
                .values(**values)
            )
            return result.rowcount == 1

    def finish(self, row: MessageRow, rev: int, now: float, **values: Any) -> None:
        """Delivered up to `rev`: nothing left to do unless a newer revision came meanwhile."""
        newer = message_t.c.wanted_rev > rev
        self.set(
            row,
            done_rev=rev,
            due_at=case((newer, message_t.c.due_at), else_=None),
            pending_since=case((newer, message_t.c.pending_since), else_=None),
            lease_until=None,
            lease_owner=None,
            tries=0,
            last_error=None,
            delivered_at=now,
            **values,
        )

    def defer(self, row: MessageRow, until: float, error: str | None = None, **values: Any) -> None:
        """Try again at `until` (rate limit, Slack down, parent not posted yet)."""
        extra = {"tries": row.tries + 1, "last_error": error[:300]} if error else {}
        self.set(row, due_at=until, lease_until=None, lease_owner=None, **extra, **values)

    def cancel(self, row: MessageRow) -> None:
        """Never to be posted (its incident was folded into another before it went out)."""
        self.set(
            row, cancelled=True, due_at=None, pending_since=None, lease_until=None, lease_owner=None
        )
