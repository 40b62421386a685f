"""What Airflow itself declares for the catalog: DAG tags, owners, paused flags, Assets.

Read every `declarations_interval`, not every cycle: the size of these tables is the number of
DAGs and Assets, not history.
"""

from __future__ import annotations

from sqlalchemy import Connection, or_, select

from impactwatch.catalog.airflow_merge import AssetDeclaration, DagDeclaration
from impactwatch.collector.airflow import schema as af


def read_declarations(conn: Connection) -> tuple[list[DagDeclaration], list[AssetDeclaration]]:
    """Live DAGs (not stale) with tags and owners, and Assets with extras and producers."""
    tags: dict[str, list[str]] = {}
    for row in conn.execute(select(af.dag_tag)):
        tags.setdefault(row.dag_id, []).append(row.name)
    live = or_(af.dag.c.is_stale.is_(False), af.dag.c.is_stale.is_(None))
    dags = [
        DagDeclaration(
            dag_id=row.dag_id,
            owners=tuple(o.strip() for o in (row.owners or "").split(",") if o.strip()),
            tags=tuple(sorted(tags.get(row.dag_id, ()))),
            is_paused=bool(row.is_paused),
        )
        for row in conn.execute(select(af.dag).where(live))
    ]
    producers: dict[int, list[tuple[str, str]]] = {}
    for row in conn.execute(select(af.task_outlet_asset_reference)):
        producers.setdefault(row.asset_id, []).append((row.dag_id, row.task_id))
    assets = [
        AssetDeclaration(
            uri=row.uri,
            name=row.name,
            extra=row.extra if isinstance(row.extra, dict) else {},
            producers=tuple(sorted(producers.get(row.id, ()))),
        )
        for row in conn.execute(select(af.asset))
    ]
    return dags, assets
