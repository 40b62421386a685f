"""What refreshes each data product, as Airflow knows it, read from the alerts' `producers`
annotation (written by the generated rules from `impactwatch_dataset_producer`; see
docs/design-notes.md, "Producers"). Pure.

The router never reads Airflow's DB: the catalog names the producer where it names a DAG or a
task; where it names an Asset, the alerts themselves say which DAGs and tasks write it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from impactwatch.contract.alerts import PRODUCERS

Learned = Mapping[str, frozenset[str]]
"""Data product -> the DAG ids that refresh it, learned from alerts."""

NOTHING: Learned = {}
_ID = re.compile(r"[\w.-]{1,250}")  # Airflow's rule for DAG and task ids; catalog names fit it
MAX_WORDS = 500  # an annotation is clipped at the edge (router/bounds.py); so is this


def parse(text: str) -> dict[str, set[tuple[str, str]]]:
    """`dataset=dag_id/task_id` words (task_id may be empty) -> {dataset: {(dag_id, task_id)}}.
    Words that do not read so are skipped: an annotation never makes an alert bad."""
    out: dict[str, set[tuple[str, str]]] = {}
    for word in text.split()[:MAX_WORDS]:
        dataset, eq, rest = word.partition("=")
        dag_id, _slash, task_id = rest.partition("/")
        if not eq or not _ID.fullmatch(dataset) or not _ID.fullmatch(dag_id):
            continue
        if task_id and not _ID.fullmatch(task_id):
            continue
        out.setdefault(dataset, set()).add((dag_id, task_id))
    return out


def learn(annotation_maps: Iterable[Mapping[str, str]]) -> Learned:
    """Every alert's producers merged: dataset -> DAG ids."""
    found: dict[str, set[str]] = {}
    for notes in annotation_maps:
        text = notes.get(PRODUCERS)
        if not text:
            continue
        for dataset, writers in parse(text).items():
            found.setdefault(dataset, set()).update(dag for dag, _task in writers)
    return {k: frozenset(v) for k, v in found.items()}


def tasks_of(annotations: Mapping[str, str], dataset: str) -> list[tuple[str, str]]:
    """The (dag_id, task_id) an alert says refresh `dataset`, sorted."""
    return sorted(parse(annotations.get(PRODUCERS, "")).get(dataset, ()))
