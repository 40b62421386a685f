"""Merge what Airflow itself declares (DAG tags and owners, Asset extras) into a catalog.

Pure: the caller reads the declarations (from the metadata DB) and passes them in. The YAML
wins field by field wherever both speak. Airflow data is never fatal: anything unusable is
dropped with a note saying what and why.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from impactwatch.catalog.durations import DurationError, format_duration, parse_limit
from impactwatch.catalog.model import TIERS, Catalog, Dataset, Pipeline, Producer

ASSET_KEYS = ("title", "team", "tier", "freshness", "dataset")
"""Keys of an Asset's `extra` that make it a data product."""


@dataclass(frozen=True)
class DagDeclaration:
    """A DAG as Airflow knows it (the `dag` and `dag_tag` tables)."""

    dag_id: str
    owners: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    is_paused: bool = False


@dataclass(frozen=True)
class AssetDeclaration:
    """An Asset as Airflow knows it; `producers` are (dag_id, task_id) pairs with it as outlet."""

    uri: str
    name: str
    extra: Mapping[str, Any] = field(default_factory=dict)
    producers: tuple[tuple[str, str], ...] = ()


def merge_airflow_declarations(
    catalog: Catalog, dags: Iterable[DagDeclaration], assets: Iterable[AssetDeclaration]
) -> tuple[Catalog, list[str]]:
    """A new catalog with Airflow's declarations filled in, and notes on what was ignored.

    - An Asset whose `extra` has any of title, team, tier, freshness, dataset is the data
      product `extra["dataset"]` (else the Asset's name), produced by the Asset's URI.
    - DAG tag `team:<t>` sets the pipeline's team (adding the pipeline if the YAML lacks it);
      `dataset:<name>` adds that data product produced by the DAG, or fills its `produced_by`.
    - With no team from the YAML or a tag, the first DAG owner that is a team owns the DAG.
    - The YAML wins field by field; an unknown team or a bad tier or freshness is dropped.

    A team is known when it is under `teams:`; with no teams declared, tag and extra teams are
    taken as they are (owners never are: they are user names unless they match a team).
    """
    assets = sorted(assets, key=lambda a: a.uri)
    merge = _Merge(catalog, assets)
    for asset in assets:
        merge.asset(asset)
    for dag in sorted(dags, key=lambda d: d.dag_id):
        merge.dag(dag)
    return catalog.model_copy(update={"datasets": merge.datasets, "pipelines": merge.pipelines}), (
        merge.notes
    )


class _Merge:
    def __init__(self, catalog: Catalog, assets: Iterable[AssetDeclaration]) -> None:
        self.teams = catalog.teams
        self.datasets = dict(catalog.datasets)
        self.pipelines = dict(catalog.pipelines)
        self.notes: list[str] = []
        self.asset_producers = {a.uri: set(a.producers) for a in assets}

    def same_producer(self, mine: Producer, theirs: Producer) -> bool:
        """Whether two producers name the same thing: equal, or an Asset and a DAG (task)
        that Airflow records as writing it."""
        if mine == theirs:
            return True
        asset, dag = (mine, theirs) if mine.asset_uri else (theirs, mine)
        writers = self.asset_producers.get(asset.asset_uri or "", set())
        return dag.dag_id is not None and any(
            dag.dag_id == dag_id and dag.task_id in (None, task_id) for dag_id, task_id in writers
        )

    def team_ok(self, team: object, source: str) -> bool:
        if not isinstance(team, str) or not team.strip():
            self.notes.append(f"{source}: team {team!r} is not a team name; ignored")
            return False
        if self.teams and team not in self.teams:
            known = ", ".join(self.teams)
            self.notes.append(f"{source}: unknown team {team!r} ignored (teams: {known})")
            return False
        return True

    def fill(self, name: str, values: dict[str, Any], source: str) -> None:
        """Set `values` on data product `name` (created if new) where nothing set them yet."""
        current = self.datasets.get(name)
        if current is None:
            try:
                self.datasets[name] = Dataset.model_validate({"name": name, **values})
            except ValueError as exc:
                self.notes.append(f"{source}: data product {name!r} not added: {exc}")
            return
        update = {}
        for key, value in values.items():
            mine = getattr(current, key)
            if key in current.model_fields_set and mine is not None:
                same = mine == value or (key == "produced_by" and self.same_producer(mine, value))
                if not same:
                    self.notes.append(
                        f"{source}: {key} of {name!r} ignored: the catalog says {_show(mine)}"
                    )
                continue
            update[key] = value
        if update:
            self.datasets[name] = current.model_copy(update=update)

    def asset(self, asset: AssetDeclaration) -> None:
        extra = asset.extra if isinstance(asset.extra, Mapping) else {}
        if not any(key in extra for key in ASSET_KEYS):
            return
        source = f"Asset {asset.uri}"
        name = extra.get("dataset", asset.name)
        if not isinstance(name, str) or not name.strip():
            self.notes.append(f"{source}: dataset {name!r} is not a name; using {asset.name!r}")
            name = asset.name
        values: dict[str, Any] = {"produced_by": Producer(asset_uri=asset.uri)}
        title = extra.get("title")
        if isinstance(title, str) and title.strip():
            values["title"] = title.strip()
        elif title is not None:
            self.notes.append(f"{source}: title {title!r} is not text; ignored")
        if "team" in extra and self.team_ok(extra["team"], source):
            values["team"] = extra["team"]
        if "tier" in extra:
            if extra["tier"] in TIERS:
                values["tier"] = extra["tier"]
            else:
                tiers = ", ".join(TIERS)
                self.notes.append(f"{source}: tier {extra['tier']!r} ignored (use {tiers})")
        if "freshness" in extra:
            try:
                values["freshness"] = parse_limit(extra["freshness"])
            except (DurationError, TypeError) as exc:
                self.notes.append(f"{source}: freshness ignored: {exc}")
        self.fill(name, values, source)

    def dag(self, dag: DagDeclaration) -> None:
        source = f"DAG {dag.dag_id}"
        team: str | None = None
        for tag in dag.tags:
            kind, sep, value = tag.partition(":")
            kind, value = kind.strip().lower(), value.strip()
            if not sep or kind not in ("team", "dataset"):
                continue
            if kind == "dataset":
                if value:
                    self.fill(value, {"produced_by": Producer(dag_id=dag.dag_id)}, source)
                else:
                    self.notes.append(f"{source}: tag {tag!r} names no data product; ignored")
            elif team is not None:
                if value != team:
                    self.notes.append(f"{source}: tag {tag!r} ignored: already team {team!r}")
            elif self.team_ok(value, f"{source} tag {tag!r}"):
                team = value
        if team is not None:
            self.set_pipeline_team(dag.dag_id, team, source)
            return
        current = self.pipelines.get(dag.dag_id)
        if current is None or current.team is None:
            # Airflow stores owners comma-separated ("risk, markets"); the default is "airflow".
            owners = [o.strip() for owner in dag.owners for o in owner.split(",")]
            owner = next((o for o in owners if o in self.teams), None)
            if owner is not None:
                self.set_pipeline_team(dag.dag_id, owner, source)

    def set_pipeline_team(self, dag_id: str, team: str, source: str) -> None:
        current = self.pipelines.get(dag_id)
        if current is None:
            try:
                self.pipelines[dag_id] = Pipeline(dag_id=dag_id, team=team)
            except ValueError as exc:
                self.notes.append(f"{source}: pipeline not added: {exc}")
        elif current.team is None:
            self.pipelines[dag_id] = current.model_copy(update={"team": team})
        elif current.team != team:
            self.notes.append(f"{source}: team {team!r} ignored: the catalog says {current.team!r}")


def _show(value: Any) -> str:
    if isinstance(value, float):
        return format_duration(value)
    if isinstance(value, Producer):
        return str(value)
    return repr(value)
