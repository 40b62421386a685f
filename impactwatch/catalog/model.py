"""The catalog model: teams, data products, pipelines and the cost model, validated and queried.

Pure: no I/O. `catalog_loader` turns a YAML file into a `Catalog` with file:line errors;
`catalog_airflow` merges Airflow-native declarations (DAG tags, Asset extras) into one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    ValidationInfo,
    field_validator,
    model_validator,
)

from impactwatch.catalog.durations import parse_limit

Tier = Literal["critical", "high", "standard"]
TIERS: tuple[str, ...] = get_args(Tier)
Duration = Annotated[float, BeforeValidator(parse_limit)]
"""Seconds, 1 s to 366 days; written as "30m", "1h30m" or a number of seconds."""

# Airflow's rule for DAG and task ids (airflow.utils.helpers.KEY_REGEX).
_AIRFLOW_KEY = re.compile(r"[\w.-]+")
_DEADLINE = re.compile(r"(\d{1,2}):(\d{2})(?:\s+(\S+))?")
_PRODUCER_KEYS = {"dag": "dag_id", "task": "task_id", "asset": "asset_uri"}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def default_title(name: str) -> str:
    """The title a data product gets when the catalog gives none: customer_risk_scores ->
    "Customer risk scores"."""
    text = name.replace("_", " ").strip()
    return text[:1].upper() + text[1:]


def _check_airflow_key(value: str, what: str) -> str:
    if not _AIRFLOW_KEY.fullmatch(value):
        raise ValueError(
            f"{what} {value!r} is not a valid Airflow id; "
            "use letters, digits, underscores, dashes and dots only"
        )
    return value


class EscalationStep(_Model):
    """Unresolved and unacknowledged for `after`: also post to `channel`, mentioning `mention`."""

    after: Duration
    channel: str | None = None
    mention: str | None = None


class Team(_Model):
    slack_channel: str = Field(min_length=1)
    escalation: list[EscalationStep] = Field(default_factory=list)
    digest: bool = False
    fallback_channel: str | None = Field(
        default=None,
        min_length=1,
        description="Where the router posts this team's messages when Slack refuses "
        "`slack_channel` for good (channel_not_found, not_in_channel, is_archived...); "
        "default: `defaults.fallback_channel`, else the defaults team's channel",
    )


class Producer(_Model):
    """What updates a data product: a whole DAG run, one task of a DAG, or an Airflow Asset.

    Written as "dag_id", "dag_id.task_id" (split on the first dot, since task ids inside task
    groups contain dots), an Asset URI (anything with "://"), or a mapping {dag: ..., task: ...}
    / {asset: uri} (use the mapping when the DAG id itself contains a dot).
    """

    dag_id: str | None = None
    task_id: str | None = None
    asset_uri: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, value: Any) -> Any:
        if isinstance(value, str):
            return _producer_from_text(value)
        if isinstance(value, Mapping):
            unknown = sorted(
                str(k) for k in value if k not in _PRODUCER_KEYS and k not in cls.model_fields
            )
            if unknown:
                raise ValueError(
                    f"unknown key(s) {', '.join(unknown)} in produced_by; "
                    "write {dag: dag_id, task: task_id} or {asset: uri}"
                )
            return {_PRODUCER_KEYS.get(k, k): v for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> Producer:
        if (self.dag_id is None) == (self.asset_uri is None):
            raise ValueError(
                "produced_by needs exactly one of a DAG or an Asset URI; "
                "write dag_id, dag_id.task_id or an Asset URI such as s3://bucket/path"
            )
        if self.task_id is not None and self.dag_id is None:
            raise ValueError("produced_by names a task but no DAG; write dag_id.task_id")
        if self.dag_id is not None:
            _check_airflow_key(self.dag_id, "DAG id")
        if self.task_id is not None:
            _check_airflow_key(self.task_id, "task id")
        return self

    def __str__(self) -> str:
        if self.asset_uri is not None:
            return self.asset_uri
        return f"{self.dag_id}.{self.task_id}" if self.task_id else str(self.dag_id)


def _producer_from_text(value: str) -> dict[str, str | None]:
    text = value.strip()
    if "://" in text:
        return {"asset_uri": text}
    dag_id, dot, task_id = text.partition(".")
    if not dag_id or (dot and not task_id):
        raise ValueError(
            f"{value!r} is not a producer; write dag_id, dag_id.task_id or an Asset URI"
        )
    return {"dag_id": dag_id, "task_id": task_id or None}


class Deadline(_Model):
    """A time of day by which a pipeline must have succeeded, e.g. "06:00 Europe/London"."""

    hour: int = Field(ge=0, le=23)
    minute: int = Field(ge=0, le=59)
    tz: str = "UTC"

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        match = _DEADLINE.fullmatch(value.strip())
        if not match or int(match[1]) > 23 or int(match[2]) > 59:
            raise ValueError(
                f"{value!r} is not a deadline; write HH:MM and a time zone, "
                'e.g. "06:00 Europe/London" (quoted)'
            )
        return {"hour": int(match[1]), "minute": int(match[2]), "tz": match[3] or "UTC"}

    @field_validator("tz")
    @classmethod
    def _known_zone(cls, tz: str) -> str:
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {tz!r}; {_zone_hint(tz)}") from None
        return tz

    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)

    def on(self, day: date) -> datetime:
        """The deadline on `day` (a local date in the deadline's zone), as an aware datetime."""
        return datetime.combine(day, time(self.hour, self.minute), tzinfo=self.zone())

    def next_after(self, moment: datetime) -> datetime:
        """The first deadline strictly after `moment` (an aware datetime)."""
        local = moment.astimezone(self.zone())
        candidate = self.on(local.date())
        return candidate if candidate > local else self.on(local.date() + timedelta(days=1))

    def __str__(self) -> str:
        return f"{self.hour:02d}:{self.minute:02d} {self.tz}"


def _zone_hint(tz: str) -> str:
    import difflib
    import zoneinfo

    close = difflib.get_close_matches(tz, sorted(zoneinfo.available_timezones()), n=1)
    if close:
        return f"did you mean {close[0]}?"
    return "use an IANA name such as Europe/London, America/New_York or UTC"


class Dataset(_Model):
    """A business data product. `title` defaults to the name in words (see `default_title`)."""

    name: str = Field(min_length=1)
    title: str = Field(min_length=1)
    team: str | None = None
    tier: Tier = "standard"
    produced_by: Producer | None = None
    freshness: Duration | None = None
    upstream: list[str] = Field(default_factory=list)
    description: str | None = None
    # What is at stake when it is late or wrong, in the business's words ("used to approve
    # trades"): shown in incidents and their impact ranking (router/impact.py).
    impact: str | None = Field(None, min_length=1, max_length=300)

    @model_validator(mode="wrap")
    @classmethod
    def _derive_title(cls, value: Any, handler: ModelWrapValidatorHandler[Dataset]) -> Dataset:
        derived = (
            isinstance(value, Mapping)
            and value.get("title") is None
            and isinstance(value.get("name"), str)
        )
        if derived:
            value = {**value, "title": default_title(value["name"])}
        model = handler(value)
        if derived:
            # A derived title was not written by anyone: Airflow may still supply one.
            model.__pydantic_fields_set__.discard("title")
        return model


class Pipeline(_Model):
    """An Airflow DAG as the business sees it: owner, importance and its time limits."""

    dag_id: str
    team: str | None = None
    tier: Tier = "standard"
    max_duration: Duration | None = None
    deadline: Deadline | None = None
    cost_basis: Literal["measured", "reserved"] = "measured"

    @field_validator("dag_id")
    @classmethod
    def _valid_dag_id(cls, dag_id: str) -> str:
        return _check_airflow_key(dag_id, "DAG id")


class PoolResources(_Model):
    """CPU cores and memory (GiB: 2^30 bytes, as EC2's and Kubernetes' Gi) a task holds."""

    cpu: Decimal = Field(ge=0, allow_inf_nan=False)
    memory_gb: Decimal = Field(ge=0, allow_inf_nan=False)


Resources = PoolResources


class Rates(_Model):
    """Price of one CPU core for an hour and of one GiB of memory for an hour."""

    cpu_hour: Decimal = Field(default=Decimal("0.0416"), ge=0, allow_inf_nan=False)
    memory_gb_hour: Decimal = Field(default=Decimal("0.0045"), ge=0, allow_inf_nan=False)


def _price_only(value: Any) -> Any:
    """`m5.xlarge: 0.192` is short for `m5.xlarge: {hourly_price: 0.192}`."""
    if isinstance(value, int | float | Decimal | str) and not isinstance(value, bool):
        return {"hourly_price": value}
    return value


class InstanceType(_Model):
    """An EC2 instance type's hourly price; its vCPUs and memory are read from EC2
    (`ec2:DescribeInstanceTypes`) when the collector starts, unless written here.

    `cpu_share` is the part of the price paid for its vCPUs (the rest for its memory); by
    default the split of `cost.rates` (see `instance_rates`)."""

    hourly_price: Decimal = Field(gt=0, allow_inf_nan=False)
    vcpus: Decimal | None = Field(default=None, gt=0, allow_inf_nan=False)
    memory_gb: Decimal | None = Field(default=None, gt=0, allow_inf_nan=False)
    cpu_share: Decimal | None = Field(default=None, ge=0, le=1, allow_inf_nan=False)

    @property
    def resolved(self) -> bool:
        return self.vcpus is not None and self.memory_gb is not None


InstanceTypeEntry = Annotated[InstanceType, BeforeValidator(_price_only)]


class RateChoice(_Model):
    """The rates of a pool or a queue: written out, or derived from an instance type."""

    cpu_hour: Decimal | None = Field(default=None, ge=0, allow_inf_nan=False)
    memory_gb_hour: Decimal | None = Field(default=None, ge=0, allow_inf_nan=False)
    instance_type: str | None = None

    @model_validator(mode="after")
    def _one_way(self) -> RateChoice:
        written = self.cpu_hour is not None or self.memory_gb_hour is not None
        if written == (self.instance_type is not None):
            raise ValueError(
                "give either cpu_hour and memory_gb_hour, or an instance_type; "
                "e.g. {cpu_hour: 0.05, memory_gb_hour: 0.006} or {instance_type: m5.xlarge}"
            )
        if written and (self.cpu_hour is None or self.memory_gb_hour is None):
            raise ValueError(
                "give both cpu_hour and memory_gb_hour; "
                "e.g. {cpu_hour: 0.05, memory_gb_hour: 0.006}"
            )
        return self


class CostModel(_Model):
    """What a task try costs: its resources x its duration x the rates where it ran.

    Resources, first that applies: measured by the listener (pipelines with cost_basis
    `measured`), declared for the task (`tasks`, "dag_id.task_id"), declared for its pool
    (`pools`), requested in its executor_config (Kubernetes resource requests, sent by the
    listener), `default_resources`. Rates: its queue's (`queue_rates`), else its pool's
    (`pool_rates`), else `rates`.
    """

    currency: str = Field(default="USD", min_length=1)
    rates: Rates = Rates()
    instance_types: dict[str, InstanceTypeEntry] = Field(default_factory=dict)
    pool_rates: dict[str, RateChoice] = Field(default_factory=dict)
    queue_rates: dict[str, RateChoice] = Field(default_factory=dict)
    pools: dict[str, PoolResources] = Field(default_factory=dict)
    tasks: dict[str, PoolResources] = Field(default_factory=dict)
    default_resources: PoolResources = PoolResources(cpu=Decimal(1), memory_gb=Decimal(2))
    top_tasks: int = Field(default=5, ge=0, le=50)

    def resources_for_pool(self, pool: str | None) -> PoolResources:
        """The resources declared for `pool`; `default_resources` for pools not listed."""
        if pool is None:
            return self.default_resources
        return self.pools.get(pool, self.default_resources)

    def declared_resources(self, dag_id: str, task_id: str, pool: str | None) -> Resources | None:
        """What the catalog declares for a task: for the task itself, else for its pool."""
        declared = self.tasks.get(f"{dag_id}.{task_id}")
        if declared is None and pool is not None:
            declared = self.pools.get(pool)
        return declared

    def rate_choice(self, queue: str | None, pool: str | None) -> RateChoice | None:
        """The rates named for a task's queue, else for its pool; None: `rates`."""
        if queue is not None and queue in self.queue_rates:
            return self.queue_rates[queue]
        if pool is not None:
            return self.pool_rates.get(pool)
        return None

    def named_tasks(self) -> dict[str, frozenset[str]]:
        """Task ids the cost section names, by DAG id ("dag_id.task_id" keys of `tasks`)."""
        named: dict[str, set[str]] = {}
        for key in self.tasks:
            dag_id, dot, task_id = key.partition(".")
            if dot and dag_id and task_id:
                named.setdefault(dag_id, set()).add(task_id)
        return {d: frozenset(t) for d, t in named.items()}


class Defaults(_Model):
    team: str = "platform"
    fallback_channel: str | None = Field(
        default=None,
        min_length=1,
        description="Fallback channel of every team without its own `fallback_channel`; "
        "default: the defaults team's `slack_channel` (the platform team's channel)",
    )


class Catalog(_Model):
    """The whole catalog. `Dataset.name` and `Pipeline.dag_id` come from their mapping keys."""

    teams: dict[str, Team] = Field(default_factory=dict)
    datasets: dict[str, Dataset] = Field(default_factory=dict)
    pipelines: dict[str, Pipeline] = Field(default_factory=dict)
    cost: CostModel = CostModel()
    defaults: Defaults = Defaults()

    @field_validator("teams", "datasets", "pipelines", mode="before")
    @classmethod
    def _names_from_keys(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, Mapping):
            return value
        key_field = {"datasets": "name", "pipelines": "dag_id"}.get(info.field_name)
        entries = {}
        for key, body in value.items():
            body = {} if body is None else body
            if key_field and isinstance(body, Mapping) and key_field not in body:
                body = {**body, key_field: key}
            entries[key] = body
        return entries

    @model_validator(mode="after")
    def _keys_match_names(self) -> Catalog:
        for key, dataset in self.datasets.items():
            if dataset.name != key:
                raise ValueError(f"dataset {key!r} has name {dataset.name!r}; remove `name:`")
        for key, pipeline in self.pipelines.items():
            if pipeline.dag_id != key:
                raise ValueError(f"pipeline {key!r} has dag_id {pipeline.dag_id!r}; remove it")
        return self

    # -- ownership ---------------------------------------------------------------------------

    def team_of_pipeline(self, dag_id: str) -> str:
        """The pipeline's team, else `defaults.team` (also for DAGs the catalog does not list)."""
        pipeline = self.pipelines.get(dag_id)
        if pipeline is not None and pipeline.team:
            return pipeline.team
        return self.defaults.team

    def team_of_dataset(self, name: str) -> str:
        """The data product's team, else its producing pipeline's team, else `defaults.team`."""
        dataset = self.datasets.get(name)
        if dataset is None:
            return self.defaults.team
        if dataset.team:
            return dataset.team
        producer = dataset.produced_by
        if producer is not None and producer.dag_id is not None:
            return self.team_of_pipeline(producer.dag_id)
        return self.defaults.team

    # -- what a run or an asset event updates ----------------------------------------------

    def datasets_produced_by(self, dag_id: str, task_id: str | None = None) -> list[Dataset]:
        """Data products updated by a successful DAG run (`task_id` None) or task.

        A product produced by a whole DAG ("risk_scoring") is updated when the DAG RUN succeeds,
        so it is returned for `task_id=None` only; one produced by a task
        ("risk_scoring.publish_scores") is returned only for that exact dag and task.
        """
        return [
            d
            for d in self.datasets.values()
            if d.produced_by is not None
            and d.produced_by.dag_id == dag_id
            and d.produced_by.task_id == task_id
        ]

    def datasets_for_asset(self, uri: str) -> list[Dataset]:
        """Data products updated by an Asset event for `uri`."""
        return [
            d
            for d in self.datasets.values()
            if d.produced_by is not None and d.produced_by.asset_uri == uri
        ]

    # -- lineage ------------------------------------------------------------------------------

    def upstream_of(self, name: str) -> list[str]:
        """Every data product `name` depends on, directly or not, sorted."""
        graph = {d.name: d.upstream for d in self.datasets.values()}
        return _reachable(name, graph)

    def downstream_of(self, name: str) -> list[str]:
        """Every data product that depends on `name`, directly or not, sorted."""
        graph: dict[str, list[str]] = {}
        for dataset in self.datasets.values():
            for up in dataset.upstream:
                graph.setdefault(up, []).append(dataset.name)
        return _reachable(name, graph)


def _reachable(start: str, graph: Mapping[str, Iterable[str]]) -> list[str]:
    seen: set[str] = set()
    todo = list(graph.get(start, ()))
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(graph.get(name, ()))
    seen.discard(start)
    return sorted(seen)
