"""Merging Airflow's own declarations (DAG tags and owners, Asset extras) into the catalog."""

from __future__ import annotations

import pytest

from impactwatch.catalog.airflow_merge import (
    AssetDeclaration,
    DagDeclaration,
    merge_airflow_declarations,
)
from impactwatch.catalog.model import Catalog, Producer

TEAMS = {
    "risk": {"slack_channel": "#risk"},
    "markets": {"slack_channel": "#markets"},
    "platform": {"slack_channel": "#platform"},
}


def catalog(**sections: object) -> Catalog:
    return Catalog.model_validate({"teams": TEAMS, **sections})


def merge(cat: Catalog, dags=(), assets=()) -> tuple[Catalog, list[str]]:
    return merge_airflow_declarations(cat, dags, assets)


# -- DAG tags and owners ----------------------------------------------------------------------


def test_team_tag_creates_the_pipeline():
    merged, notes = merge(catalog(), [DagDeclaration("risk_scoring", tags=("team:risk",))])
    assert merged.pipelines["risk_scoring"].team == "risk"
    assert merged.team_of_pipeline("risk_scoring") == "risk"
    assert notes == []


def test_team_tag_fills_a_pipeline_without_team_but_yaml_wins():
    cat = catalog(pipelines={"a": {"max_duration": "20m"}, "b": {"team": "markets"}})
    merged, notes = merge(
        cat,
        [DagDeclaration("a", tags=("team:risk",)), DagDeclaration("b", tags=("team:risk",))],
    )
    assert merged.pipelines["a"].team == "risk"
    assert merged.pipelines["a"].max_duration == 1200
    assert merged.pipelines["b"].team == "markets"
    assert notes == ["DAG b: team 'risk' ignored: the catalog says 'markets'"]


def test_unknown_team_tag_is_dropped_with_a_note_and_owner_takes_over():
    merged, notes = merge(
        catalog(), [DagDeclaration("a", owners=("airflow", "markets"), tags=("team:rsk",))]
    )
    assert merged.pipelines["a"].team == "markets"
    assert notes == [
        "DAG a tag 'team:rsk': unknown team 'rsk' ignored (teams: risk, markets, platform)"
    ]


def test_owners_are_the_fallback_only():
    cat = catalog(pipelines={"tagged_in_yaml": {"team": "platform"}})
    merged, notes = merge(
        cat,
        [
            DagDeclaration("by_owner", owners=("airflow, risk",)),  # Airflow's comma-separated form
            DagDeclaration("tagged_in_yaml", owners=("risk",)),
            DagDeclaration("nobody", owners=("airflow",)),
        ],
    )
    assert merged.pipelines["by_owner"].team == "risk"
    assert merged.pipelines["tagged_in_yaml"].team == "platform"
    assert "nobody" not in merged.pipelines
    assert notes == []


def test_without_declared_teams_tags_are_taken_but_owners_are_not():
    merged, _ = merge(
        Catalog(), [DagDeclaration("a", tags=("team:risk",)), DagDeclaration("b", owners=("x",))]
    )
    assert merged.pipelines["a"].team == "risk"
    assert "b" not in merged.pipelines


def test_dataset_tag_creates_or_fills_produced_by():
    cat = catalog(
        datasets={
            "scores": {"title": "Customer risk scores"},
            "kept": {"produced_by": "other_dag.task"},
        }
    )
    merged, notes = merge(
        cat,
        [
            DagDeclaration(
                "risk_scoring",
                tags=("dataset:scores", "dataset:new_one", "dataset:kept", "team:risk", "etl"),
            )
        ],
    )
    assert merged.datasets["scores"].produced_by == Producer(dag_id="risk_scoring")
    assert merged.datasets["scores"].title == "Customer risk scores"
    assert merged.datasets["new_one"].produced_by == Producer(dag_id="risk_scoring")
    assert merged.datasets["new_one"].title == "New one"
    assert merged.team_of_dataset("new_one") == "risk"  # through its producing pipeline
    assert merged.datasets["kept"].produced_by == Producer(dag_id="other_dag", task_id="task")
    assert notes == [
        "DAG risk_scoring: produced_by of 'kept' ignored: the catalog says other_dag.task"
    ]
    assert [d.name for d in merged.datasets_produced_by("risk_scoring")] == ["scores", "new_one"]


# -- Asset extras -----------------------------------------------------------------------------


def test_asset_extra_creates_a_dataset():
    asset = AssetDeclaration(
        uri="s3://lake/risk/scores",
        name="customer_risk_scores",
        extra={"title": "Customer risk scores", "team": "risk", "freshness": "90m"},
        producers=(("risk_scoring", "publish_scores"),),
    )
    merged, notes = merge(catalog(), assets=[asset])
    dataset = merged.datasets["customer_risk_scores"]
    assert dataset.title == "Customer risk scores"
    assert dataset.team == "risk"
    assert dataset.freshness == 5400
    assert dataset.tier == "standard"
    assert dataset.produced_by == Producer(asset_uri="s3://lake/risk/scores")
    assert merged.datasets_for_asset("s3://lake/risk/scores") == [dataset]
    assert notes == []


def test_asset_extra_dataset_key_names_the_dataset():
    asset = AssetDeclaration("s3://x", "raw_asset_name", {"dataset": "market_data", "tier": "high"})
    merged, _ = merge(catalog(), assets=[asset])
    assert set(merged.datasets) == {"market_data"}
    assert merged.datasets["market_data"].tier == "high"


def test_asset_without_business_keys_is_not_a_dataset():
    merged, notes = merge(catalog(), assets=[AssetDeclaration("s3://x", "x", {"owner": "risk"})])
    assert merged.datasets == {}
    assert notes == []


def test_yaml_wins_field_by_field_over_asset_extra():
    cat = catalog(
        datasets={
            "scores": {
                "title": "Risk scores (YAML)",
                "freshness": "30m",
                "produced_by": "risk_scoring.publish_scores",
            }
        }
    )
    asset = AssetDeclaration(
        "s3://lake/scores",
        "scores",
        {"title": "Scores (Airflow)", "team": "risk", "tier": "critical", "freshness": "2h"},
    )
    merged, notes = merge(cat, assets=[asset])
    dataset = merged.datasets["scores"]
    assert dataset.title == "Risk scores (YAML)"
    assert dataset.freshness == 1800
    assert dataset.produced_by == Producer(dag_id="risk_scoring", task_id="publish_scores")
    assert dataset.team == "risk"  # the YAML said nothing: Airflow fills it
    assert dataset.tier == "critical"  # the YAML's tier was only the default
    assert notes == [
        "Asset s3://lake/scores: produced_by of 'scores' ignored: "
        "the catalog says risk_scoring.publish_scores",
        "Asset s3://lake/scores: title of 'scores' ignored: the catalog says 'Risk scores (YAML)'",
        "Asset s3://lake/scores: freshness of 'scores' ignored: the catalog says 30m",
    ]


def test_derived_title_gives_way_to_airflow_title():
    cat = catalog(datasets={"scores": {"team": "risk"}})
    merged, _ = merge(cat, assets=[AssetDeclaration("s3://s", "scores", {"title": "Scores!"})])
    assert merged.datasets["scores"].title == "Scores!"


@pytest.mark.parametrize(
    ("extra", "note"),
    [
        ({"team": "rsk"}, "unknown team 'rsk' ignored"),
        ({"team": 7}, "team 7 is not a team name; ignored"),
        ({"tier": "urgent"}, "tier 'urgent' ignored (use critical, high, standard)"),
        ({"freshness": "soon"}, "freshness ignored: 'soon' is not a duration"),
        ({"freshness": [1]}, "freshness ignored"),
        ({"title": ["x"]}, "title ['x'] is not text; ignored"),
        ({"dataset": ""}, "dataset '' is not a name; using 'asset'"),
    ],
)
def test_bad_airflow_values_are_dropped_with_a_note(extra, note):
    merged, notes = merge(catalog(), assets=[AssetDeclaration("s3://a", "asset", extra)])
    assert len(notes) == 1
    assert notes[0].startswith("Asset s3://a: ")
    assert note in notes[0]
    assert merged.datasets["asset"].produced_by == Producer(asset_uri="s3://a")


def test_merge_returns_a_new_catalog_and_leaves_the_input_alone():
    cat = catalog(datasets={"scores": {}}, pipelines={"p": {}})
    before = cat.model_dump()
    merged, _ = merge(
        cat,
        [DagDeclaration("p", tags=("team:risk", "dataset:scores"))],
        [AssetDeclaration("s3://n", "new", {"team": "risk"})],
    )
    assert cat.model_dump() == before
    assert merged is not cat
    assert merged.pipelines["p"].team == "risk"
    assert set(merged.datasets) == {"scores", "new"}


def test_invalid_dag_id_from_airflow_is_a_note_not_an_error():
    merged, notes = merge(catalog(), [DagDeclaration("bad dag", tags=("team:risk",))])
    assert "bad dag" not in merged.pipelines
    assert len(notes) == 1 and notes[0].startswith("DAG bad dag: pipeline not added")


def test_the_example_dags_merge_cleanly():
    from pathlib import Path

    from impactwatch.catalog.loader import load_catalog

    example = load_catalog(Path(__file__).resolve().parents[2] / "examples" / "catalog.yaml")
    merged, notes = merge(
        example,
        [
            DagDeclaration(
                "risk_scoring", ("risk",), ("team:risk", "dataset:customer_risk_scores")
            ),
            DagDeclaration("market_data_ingest", ("markets",), ("team:markets",)),
        ],
        [
            AssetDeclaration(
                "s3://fintech-lake/risk/customer_scores",
                "customer_risk_scores",
                {"title": "Customer risk scores", "team": "risk", "freshness": "90m"},
                (("risk_scoring", "publish_scores"),),
            )
        ],
    )
    assert merged == example
    assert notes == []  # the tag agrees with the YAML: the DAG writes the Asset it names


def test_an_asset_and_the_dag_task_writing_it_are_the_same_producer():
    cat = catalog(datasets={"a": {"produced_by": "d.t"}, "b": {"produced_by": "s3://b"}})
    assets = [
        AssetDeclaration("s3://a", "a", {"team": "risk"}, (("d", "t"),)),
        AssetDeclaration("s3://b", "b", {}, (("d", "t"),)),
    ]
    dags = [DagDeclaration("d", tags=("dataset:b",)), DagDeclaration("e", tags=("dataset:b",))]
    merged, notes = merge(cat, dags, assets)
    assert merged.datasets["a"].produced_by == Producer(dag_id="d", task_id="t")
    assert merged.datasets["a"].team == "risk"
    assert notes == ["DAG e: produced_by of 'b' ignored: the catalog says s3://b"]
