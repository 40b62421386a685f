"""Which business problem an alert is about, who owns it, and what lies up- and downstream.

An alert's subject is the data product it names (`dataset` label), else its pipeline (`dag_id`),
else its rule (`alertname`: platform alerts). Its owner comes from the catalog; when the catalog
does not know the subject, from the alert's `team` label if that team exists; else the catalog's
default team, with a line saying the owner is missing. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

from impactwatch.catalog.model import Catalog
from impactwatch.contract import alerts
from impactwatch.router.payload import Alert
from impactwatch.router.producers import NOTHING, Learned

SubjectKind = Literal["dataset", "dag", "component", "rule"]
SEVERITY_RANK = alerts.SEVERITY_RANK  # incidents.py reads it here


@dataclass(frozen=True, order=True)
class Subject:
    kind: SubjectKind
    name: str

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.name}"

    def describe(self) -> str:
        word = {
            "dataset": "data product",
            "dag": "pipeline",
            "component": "platform component",
            "rule": "alert rule",
        }[self.kind]
        return f"{word} {self.name}"

    @classmethod
    def from_key(cls, key: str) -> Subject:
        kind, _, name = key.partition(":")
        if kind not in ("dataset", "dag", "component", "rule"):
            raise ValueError(f"not a subject key: {key!r}")
        return cls(kind, name)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Route:
    subject: Subject
    team: str
    severity: str
    kind: str
    owner_note: str | None = None  # why the owner is not the catalog's answer


def subject_of(alert: Alert) -> Subject:
    if alert.label(alerts.DATASET):
        return Subject("dataset", alert.label(alerts.DATASET))
    if alert.label(alerts.DAG_ID):
        return Subject("dag", alert.label(alerts.DAG_ID))
    if alert.label(alerts.COMPONENT):
        return Subject("component", alert.label(alerts.COMPONENT))
    return Subject("rule", alert.label(alerts.ALERTNAME) or "unnamed alert")


def severity_of(alert: Alert) -> str:
    """critical, or warning for anything else (info, none, a typo): never dropped."""
    critical = alert.label(alerts.SEVERITY).lower() in (alerts.CRITICAL, "page")
    return alerts.CRITICAL if critical else alerts.WARNING


def route(alert: Alert, catalog: Catalog) -> Route:
    subject = subject_of(alert)
    team, note = owner_of(subject, alert.label(alerts.TEAM), catalog)
    return Route(subject, team, severity_of(alert), alert.label(alerts.KIND) or "other", note)


def owner_of(subject: Subject, label_team: str, catalog: Catalog) -> tuple[str, str | None]:
    """(team, note): the catalog's owner, else the label's known team, else the default team."""
    declared = _declared_team(subject, catalog)
    if declared in catalog.teams:
        return str(declared), None
    if label_team in catalog.teams:
        if subject.kind in ("rule", "component"):
            return label_team, None
        if declared is None:
            why = f"the catalog file names no owner for {subject.describe()}"
        else:
            why = f"the catalog's owner {declared!r} of {subject.describe()} is not a team"
        return label_team, f"{why}; owner taken from the alert's team label"
    default = catalog.defaults.team
    said = f" (the alert says team {label_team!r}, not in the catalog)" if label_team else ""
    return default, (
        f"Owner missing: no team in the catalog owns {subject.describe()}{said}; "
        f"sent to the default team {default}. Add an owner to the catalog."
    )


def _declared_team(subject: Subject, catalog: Catalog) -> str | None:
    """The team the catalog explicitly gives the subject (not its default)."""
    if subject.kind == "dataset":
        dataset = catalog.datasets.get(subject.name)
        if dataset is None:
            return None
        if dataset.team:
            return dataset.team
        producer = dataset.produced_by
        if producer is not None and producer.dag_id is not None:
            return _declared_team(Subject("dag", producer.dag_id), catalog)
        return None
    if subject.kind == "dag":
        pipeline = catalog.pipelines.get(subject.name)
        return pipeline.team if pipeline is not None else None
    return None


class Lineage:
    """Lineage questions about incident subjects, with the catalog's graphs built once."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._up: dict[str, frozenset[str]] = {}
        self._down: dict[str, frozenset[str]] = {}

    @cached_property
    def _producers(self) -> Mapping[str, str]:
        return {
            d.name: d.produced_by.dag_id
            for d in self.catalog.datasets.values()
            if d.produced_by is not None and d.produced_by.dag_id is not None
        }

    @cached_property
    def _products_of_dag(self) -> Mapping[str, frozenset[str]]:
        out: dict[str, set[str]] = {}
        for name, dag in self._producers.items():
            out.setdefault(dag, set()).add(name)
        return {k: frozenset(v) for k, v in out.items()}

    @cached_property
    def _components(self) -> Mapping[str, str]:
        """Subject key -> a name for its lineage component (connected through upstream edges
        and producing pipelines): decisions about different components never interact."""
        parent: dict[str, str] = {}

        def find(key: str) -> str:
            parent.setdefault(key, key)
            while parent[key] != key:
                parent[key] = parent[parent[key]]
                key = parent[key]
            return key

        def union(a: str, b: str) -> None:
            ra, rb = find(a), find(b)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)

        for dataset in self.catalog.datasets.values():
            key = Subject("dataset", dataset.name).key
            find(key)
            for up in dataset.upstream:
                union(key, Subject("dataset", up).key)
            dag = self._producers.get(dataset.name)
            if dag:
                union(key, Subject("dag", dag).key)
        return {key: find(key) for key in parent}

    def component(self, subject: Subject) -> str:
        return self._components.get(subject.key, subject.key)

    def upstream(self, dataset: str) -> frozenset[str]:
        if dataset not in self._up:
            self._up[dataset] = frozenset(self.catalog.upstream_of(dataset))
        return self._up[dataset]

    def downstream(self, dataset: str) -> frozenset[str]:
        if dataset not in self._down:
            self._down[dataset] = frozenset(self.catalog.downstream_of(dataset))
        return self._down[dataset]

    def datasets_of(self, subject: Subject, learned: Learned = NOTHING) -> frozenset[str]:
        """The data products a subject is about: itself, or what its pipeline produces (as the
        catalog says, or as alerts say Airflow declares it: `learned`)."""
        if subject.kind == "dataset":
            return frozenset({subject.name})
        if subject.kind == "dag":
            own = self._products_of_dag.get(subject.name, frozenset())
            extra = {name for name, dags in learned.items() if subject.name in dags}
            return own | extra if extra else own
        return frozenset()

    def producer_dag(self, dataset: str) -> str | None:
        return self._producers.get(dataset)

    def producer_dags(self, dataset: str, learned: Learned = NOTHING) -> frozenset[str]:
        """The catalog's producing DAG and those the alerts name."""
        dag = self._producers.get(dataset)
        found = learned.get(dataset, frozenset())
        return found | {dag} if dag else found

    def covers(self, root: Subject, subject: Subject, learned: Learned = NOTHING) -> bool:
        """Whether a problem with `root` explains one with `subject` (same, or downstream).

        A data product's problem never explains a pipeline that writes it or anything upstream
        of it: that pipeline is the cause, not a consequence. Without this rule a stale product
        and its producer's failure would each cover the other, the incident opened first would
        win, and a failure arriving after several of its products had gone stale would join one
        of them and leave the others open (issue 15: the outcome depended on arrival order)."""
        if root == subject:
            return True
        roots = self.datasets_of(root, learned)
        if not roots:
            return False
        reach = set(roots)
        for name in roots:
            reach |= self.downstream(name)
        made = self.datasets_of(subject, learned)
        if not made & reach:
            return False
        if root.kind == "dataset" and subject.kind == "dag":
            return not made & ({root.name} | self.upstream(root.name))
        return True

    def _keys(self, datasets: Iterable[str], learned: Learned = NOTHING) -> set[str]:
        keys: set[str] = set()
        for name in datasets:
            keys.add(Subject("dataset", name).key)
            for dag in self.producer_dags(name, learned):
                keys.add(Subject("dag", dag).key)
        return keys

    def upstream_keys(self, subject: Subject, learned: Learned = NOTHING) -> set[str]:
        """Keys of incidents that could cover `subject` (itself included)."""
        own = self.datasets_of(subject, learned)
        names = set(own)
        for name in own:
            names |= self.upstream(name)
        return self._keys(names, learned) | {subject.key}

    def downstream_keys(self, subject: Subject, learned: Learned = NOTHING) -> set[str]:
        """Keys of incidents that `subject` could cover (itself excluded)."""
        names: set[str] = set()
        for name in self.datasets_of(subject, learned):
            names |= self.downstream(name)
            names.add(name)
        return self._keys(names, learned) - {subject.key}

    def components(self, subject: Subject, learned: Learned = NOTHING) -> set[str]:
        """The lineage components a decision about `subject` can touch: its own, and those the
        alerts' producers join it to (an Asset's writer is not an edge of the catalog's)."""
        found = {self.component(subject)}
        for name in self.datasets_of(subject, learned):
            found.add(self.component(Subject("dataset", name)))
            for up in (name, *self.upstream(name)):
                for dag in learned.get(up, ()):
                    found.add(self.component(Subject("dag", dag)))
        return found

    def title(self, subject: Subject) -> str:
        """How people call the subject: a data product's title, else its id."""
        if subject.kind == "dataset":
            dataset = self.catalog.datasets.get(subject.name)
            return dataset.title if dataset is not None else subject.name
        return subject.name
