"""Folding by producers Airflow declares (an Asset's writers), read from the alerts' `producers`
annotation: the router never reads Airflow's DB. Pure: decisions on in-memory state."""

from __future__ import annotations

import copy
import itertools

from impactwatch.catalog.model import Catalog
from impactwatch.router import producers
from impactwatch.router.incidents import Decider, teams_with_digest
from impactwatch.router.model import Changes, Incident, View
from impactwatch.router.payload import Notification
from impactwatch.router.routing import Subject
from tests.unit.test_router_support import CATALOG, T0, alert, notification


def asset_catalog() -> Catalog:
    """The support catalog plus products the catalog knows only by Asset URI."""
    data = copy.deepcopy(CATALOG)
    data["datasets"]["fx_prices"] = {
        "title": "FX prices",
        "team": "markets",
        "produced_by": "s3://lake/fx/prices",
        "freshness": "1h",
    }
    data["datasets"]["fx_exposure"] = {
        "title": "FX exposure",
        "team": "compliance",
        "produced_by": "s3://lake/fx/exposure",
        "freshness": "2h",
        "upstream": ["fx_prices"],
    }
    data["pipelines"]["fx_ingest"] = {"team": "markets", "tier": "critical"}
    return Catalog.model_validate(data)


class Memory:
    def __init__(self) -> None:
        ids = itertools.count(1)
        cat = asset_catalog()
        self.decider = Decider(cat, lambda: f"i{next(ids)}", teams_with_digest(cat))
        self.view = View()

    def apply(self, note: Notification, now: float = T0) -> Changes:
        for incident in self.view.incidents.values():
            incident.new = incident.dirty = False
        self.view.seal()
        return self.decider.apply(self.view, note, now)

    def open(self) -> dict[str, Incident]:
        return {i.key: i for i in self.view.incidents.values() if i.status == "open"}


FAILED = alert(
    "CriticalPipelineFailed",
    kind="failure",
    severity="critical",
    annotations={"summary": "failed", "producers": "fx_prices=fx_ingest/publish "},
    dag_id="fx_ingest",
    team="markets",
)


def stale(dataset: str, team: str, words: str) -> dict:
    return alert(dataset=dataset, team=team, annotations={"summary": "s", "producers": words})


def test_parse_reads_words_and_skips_what_is_not_one() -> None:
    text = "a=d/t b=d2/ c=d3/grp.task bad no=/t x=y/z/w =d/t c=d4/t2"
    assert producers.parse(text) == {
        "a": {("d", "t")},
        "b": {("d2", "")},
        "c": {("d3", "grp.task"), ("d4", "t2")},
    }
    learned = producers.learn([{"producers": text}, {"summary": "no producers"}])
    assert learned["c"] == frozenset({"d3", "d4"})


def test_a_stale_asset_fed_product_folds_into_its_producers_failure() -> None:
    memory = Memory()
    memory.apply(notification(FAILED))
    note = notification(stale("fx_prices", "markets", "fx_prices=fx_ingest/publish "))
    assert "dag:fx_ingest" in memory.decider.keys_for(note)
    lineage = memory.decider.lineage
    assert lineage.component(Subject("dag", "fx_ingest")) in memory.decider.locks_for(note)
    changes = memory.apply(note)
    (root,) = memory.open().values()
    assert root.key == "dag:fx_ingest"
    assert {a.subject_key for a in root.alerts.values()} == {"dag:fx_ingest", "dataset:fx_prices"}
    assert changes.messages == {(root.id, "primary", "markets")}  # same team: no second message


def test_downstream_of_an_asset_fed_product_folds_too_and_tells_its_team() -> None:
    memory = Memory()
    memory.apply(notification(FAILED))
    words = "fx_exposure=fx_risk/publish fx_prices=fx_ingest/publish "
    changes = memory.apply(notification(stale("fx_exposure", "compliance", words)))
    (root,) = memory.open().values()
    assert root.key == "dag:fx_ingest"
    assert {role for _i, role, _t in changes.messages} == {"primary", "affected:compliance"}


def test_a_failure_arriving_later_absorbs_the_stale_product_it_feeds() -> None:
    """The failure is the cause: its incident opens and the product's folds into it."""
    memory = Memory()
    memory.apply(notification(stale("fx_prices", "markets", "fx_prices=fx_ingest/publish ")))
    assert set(memory.open()) == {"dataset:fx_prices"}
    assert "dataset:fx_prices" in memory.decider.keys_for(notification(FAILED))
    memory.apply(notification(FAILED))
    (root,) = memory.open().values()
    assert root.key == "dag:fx_ingest"
    assert {a.subject_key for a in root.alerts.values()} == {"dag:fx_ingest", "dataset:fx_prices"}


def fed_catalog() -> Catalog:
    """`fx_ingest` feeds three products of two teams: two through Assets (known to the router
    only through the alerts' `producers`), one through a task the catalog names."""
    data = copy.deepcopy(CATALOG)
    data["pipelines"]["fx_ingest"] = {"team": "markets", "tier": "critical"}
    for name, team, producer in (
        ("fx_prices", "markets", "s3://lake/fx/prices"),
        ("fx_curves", "compliance", "s3://lake/fx/curves"),
        ("fx_rates", "compliance", "fx_ingest.publish_rates"),
    ):
        data["datasets"][name] = {"team": team, "produced_by": producer, "freshness": "1h"}
    return Catalog.model_validate(data)


FED = {
    "fx_prices": ("markets", "fx_prices=fx_ingest/publish "),
    "fx_curves": ("compliance", "fx_curves=fx_ingest/curves.publish "),
    "fx_rates": ("compliance", "fx_rates=fx_ingest/publish_rates "),
}
FED_FAILED = {
    **FAILED,
    "annotations": {"summary": "failed", "producers": " ".join(w for _t, w in FED.values())},
}


def test_the_failure_and_the_products_it_feeds_fold_whatever_the_order() -> None:
    """Each alert in a notification of its own (Alertmanager groups by data product), in every
    order, or all in one notification: one incident, the failure's, holding every alert."""
    cat = fed_catalog()
    stales = [stale(name, team, words) for name, (team, words) in FED.items()]
    orders = [[[a] for a in order] for order in itertools.permutations([FED_FAILED, *stales])]
    for batches in [*orders, [[FED_FAILED, *stales]], [[*stales, FED_FAILED]]]:
        ids = itertools.count(1)
        decider = Decider(cat, lambda ids=ids: f"i{next(ids)}", teams_with_digest(cat))
        view = View()
        for batch in batches:
            for incident in view.incidents.values():
                incident.new = incident.dirty = False
            view.seal()
            decider.apply(view, notification(*batch), T0)
        opened = [i for i in view.incidents.values() if i.status == "open"]
        assert [i.key for i in opened] == ["dag:fx_ingest"], batches
        assert {a.subject_key for a in opened[0].alerts.values()} == {
            "dag:fx_ingest",
            *(f"dataset:{name}" for name in FED),
        }


def test_without_the_annotation_an_asset_fed_product_is_its_own_incident() -> None:
    memory = Memory()
    bare = {**FAILED, "annotations": {"summary": "failed"}}
    memory.apply(notification(bare))
    memory.apply(notification(alert(dataset="fx_prices", team="markets")))
    assert set(memory.open()) == {"dag:fx_ingest", "dataset:fx_prices"}
