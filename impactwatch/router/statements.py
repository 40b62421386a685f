"""The router's SQL, built once (SQLAlchemy then reuses the compiled form: the hot path is a
webhook), and the conversions between rows and the decision's objects."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, and_, bindparam, func, select, union_all, update
from sqlalchemy.dialects import postgresql, sqlite

from impactwatch.router.model import AlertState, Incident, View
from impactwatch.router.tables import alert_t, incident_t, message_t

CHUNK = 500
_FEW = 3


def insert_new(conn: Connection, table: Any, key: str) -> Any:
    """INSERT that skips rows whose `key` column exists already (ON CONFLICT DO NOTHING)."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing(index_elements=[key])


INCIDENT_FIELDS = (
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
    "group_key",
)  # fmt: skip
# Statements built once: SQLAlchemy then reuses their compiled form (the hot path is a webhook).
_FPS = bindparam("fps", expanding=True)
_KEYS = bindparam("keys", expanding=True)
_IDS = bindparam("ids", expanding=True)
_GROUP = bindparam("group")  # None matches nothing
# The keys of an incident's outbox rows ride along with it, so planning its messages needs no
# query of its own ("does this message exist yet?").
_MESSAGE_KEYS = (
    select(func.aggregate_strings(message_t.c.key, "\n"))
    .where(message_t.c.incident_id == incident_t.c.id)
    .scalar_subquery()
    .label("message_keys")
)
_INCIDENT_COLUMNS = (incident_t, _MESSAGE_KEYS)
_IDS_OF_GROUP = select(alert_t.c.incident_id).where(
    alert_t.c.group_key == _GROUP, alert_t.c.incident_id.is_not(None)
)
ALERTS_BY_FP = select(alert_t).where(alert_t.c.fingerprint.in_(_FPS))
ALERTS_OF_GROUP = select(alert_t).where(alert_t.c.group_key == _GROUP)
ALERTS_OF = select(alert_t).where(alert_t.c.incident_id.in_(_IDS))
INCIDENTS = select(*_INCIDENT_COLUMNS).where(incident_t.c.id.in_(_IDS))
# A notification's whole view in two statements: the incidents (open ones of its keys, named
# ones, those its alerts and its group's alerts belong to), then the alerts (its own, its
# group's, and all of those incidents'). UNION ALL keeps each branch on its index; duplicates
# are dropped while reading.
_OPEN_OF_KEYS = and_(incident_t.c.key.in_(_KEYS), incident_t.c.status == "open")
OPEN_INCIDENTS = select(*_INCIDENT_COLUMNS).where(_OPEN_OF_KEYS)
_IDS_OF_FPS = select(alert_t.c.incident_id).where(
    alert_t.c.fingerprint.in_(_FPS), alert_t.c.incident_id.is_not(None)
)
VIEW_INCIDENTS = union_all(
    OPEN_INCIDENTS,
    INCIDENTS,
    select(*_INCIDENT_COLUMNS).where(incident_t.c.id.in_(_IDS_OF_FPS)),
    select(*_INCIDENT_COLUMNS).where(incident_t.c.id.in_(_IDS_OF_GROUP)),
)
VIEW_ALERTS = union_all(
    ALERTS_BY_FP,
    ALERTS_OF_GROUP,
    select(alert_t).where(
        alert_t.c.incident_id.in_(
            union_all(
                select(incident_t.c.id).where(_OPEN_OF_KEYS),
                select(incident_t.c.id).where(incident_t.c.id.in_(_IDS)),
                _IDS_OF_FPS,
                _IDS_OF_GROUP,
            )
        )
    ),
)
UPDATE_ALERT = (
    update(alert_t)
    .where(alert_t.c.fingerprint == bindparam("_k"))
    .values({c: bindparam(c) for c in _ALERT_COLUMNS})
)
UPDATE_INCIDENT = (
    update(incident_t)
    .where(incident_t.c.id == bindparam("_k"))
    .values({c: bindparam(c) for c in INCIDENT_FIELDS})
)


def lock_id(name: str) -> int:
    """A stable signed 64-bit advisory lock id for a name (same in every replica)."""
    digest = hashlib.blake2b(f"impactwatch-router:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def many(conn: Connection, statement: Any, rows: list[dict[str, Any]]) -> None:
    """executemany, but one execute per row for a few rows (the common case): psycopg runs
    executemany in pipeline mode, whose socket loop costs more CPU than a few round trips."""
    if len(rows) > _FEW:
        conn.execute(statement, rows)
        return
    for row in rows:
        conn.execute(statement, row)


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
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
        group_key=row.group_key,
    )


def incident_from_row(row: Any) -> Incident:
    return Incident(id=row.id, **{f: getattr(row, f) for f in INCIDENT_FIELDS})


def read_incident(view: View, row: Any) -> None:
    if row.id not in view.incidents:
        view.incidents[row.id] = incident_from_row(row)
        if row.message_keys:
            view.messages.update(row.message_keys.split("\n"))


def alert_values(alert: AlertState, now: float) -> dict[str, Any]:
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
        "group_key": alert.group_key,
    }
