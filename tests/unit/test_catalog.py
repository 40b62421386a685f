"""The catalog model: parsing of compact forms and the queries every consumer relies on."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from pydantic import ValidationError

from impactwatch.catalog.model import (
    Catalog,
    Dataset,
    Deadline,
    EscalationStep,
    Producer,
    Team,
    default_title,
)


def catalog(**sections: object) -> Catalog:
    return Catalog.model_validate(sections)


# -- producers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "dag_id", "task_id", "asset_uri"),
    [
        ("risk_scoring", "risk_scoring", None, None),
        ("risk_scoring.publish_scores", "risk_scoring", "publish_scores", None),
        ("etl.group.load", "etl", "group.load", None),  # task-group ids keep their dots
        ("s3://lake/risk/scores", None, None, "s3://lake/risk/scores"),
        ("  risk_scoring  ", "risk_scoring", None, None),
        ({"dag": "a.b", "task": "t"}, "a.b", "t", None),
        ({"dag": "risk_scoring"}, "risk_scoring", None, None),
        ({"asset": "postgres://db/schema/table"}, None, None, "postgres://db/schema/table"),
        ({"dag_id": "d", "task_id": "t"}, "d", "t", None),  # what model_dump writes
    ],
)
def test_producer_forms(written, dag_id, task_id, asset_uri):
    producer = Producer.model_validate(written)
    assert (producer.dag_id, producer.task_id, producer.asset_uri) == (dag_id, task_id, asset_uri)


@pytest.mark.parametrize(
    "written",
    ["", ".task", "dag.", "risk scoring", {"dag": "d", "tsk": "t"}, {"task": "t"}, {}, 42],
)
def test_producer_rejects(written):
    with pytest.raises(ValidationError):
        Producer.model_validate(written)


def test_producer_round_trips_and_prints():
    producer = Producer.model_validate("risk_scoring.publish_scores")
    assert Producer.model_validate(producer.model_dump()) == producer
    assert str(producer) == "risk_scoring.publish_scores"
    assert str(Producer.model_validate("risk_scoring")) == "risk_scoring"
    assert str(Producer.model_validate("s3://x/y")) == "s3://x/y"
    assert hash(producer) == hash(Producer(dag_id="risk_scoring", task_id="publish_scores"))


# -- deadlines --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("06:00 Europe/London", (6, 0, "Europe/London")),
        ("6:30", (6, 30, "UTC")),
        ("  23:59   America/New_York ", (23, 59, "America/New_York")),
        ({"hour": 8, "minute": 5, "tz": "Asia/Tokyo"}, (8, 5, "Asia/Tokyo")),
    ],
)
def test_deadline_forms(written, expected):
    deadline = Deadline.model_validate(written)
    assert (deadline.hour, deadline.minute, deadline.tz) == expected
    assert deadline.zone().key == expected[2]


@pytest.mark.parametrize(
    "written", ["24:00", "06:60", "6am", "06:00 Europe/Londn", "06:00 Mars/Base", 600]
)
def test_deadline_rejects(written):
    with pytest.raises(ValidationError):
        Deadline.model_validate(written)


def test_deadline_unknown_zone_suggests_the_close_one():
    with pytest.raises(ValidationError, match="did you mean Europe/London"):
        Deadline.model_validate("06:00 Europe/Londn")


def test_deadline_times_follow_daylight_saving():
    deadline = Deadline.model_validate("06:00 Europe/London")
    assert str(deadline) == "06:00 Europe/London"
    assert deadline.on(date(2025, 1, 15)).astimezone(UTC).hour == 6  # GMT
    assert deadline.on(date(2025, 7, 15)).astimezone(UTC).hour == 5  # BST
    before = datetime(2025, 7, 15, 4, 59, tzinfo=UTC)
    after = datetime(2025, 7, 15, 5, 0, tzinfo=UTC)
    assert deadline.next_after(before) == datetime(2025, 7, 15, 5, 0, tzinfo=UTC)
    assert deadline.next_after(after) == datetime(2025, 7, 16, 5, 0, tzinfo=UTC)


# -- datasets, teams, names -------------------------------------------------------------------


def test_title_defaults_to_the_name_in_words_and_is_not_marked_as_set():
    dataset = Dataset(name="customer_risk_scores")
    assert dataset.title == "Customer risk scores"
    assert "title" not in dataset.model_fields_set
    assert default_title("fx_rates") == "Fx rates"
    written = Dataset(name="fx_rates", title="FX rates")
    assert written.title == "FX rates"
    assert "title" in written.model_fields_set


def test_durations_parse_in_every_duration_field():
    cat = catalog(
        teams={"risk": {"slack_channel": "#r", "escalation": [{"after": "1h30m"}]}},
        datasets={"x": {"freshness": "30m"}},
        pipelines={"p": {"max_duration": 90}},
    )
    assert cat.teams["risk"].escalation[0].after == 5400.0
    assert cat.datasets["x"].freshness == 1800.0
    assert cat.pipelines["p"].max_duration == 90.0


def test_names_and_dag_ids_come_from_keys_and_empty_entries_are_allowed():
    cat = catalog(datasets={"fx_rates": None}, pipelines={"risk_scoring": None})
    assert cat.datasets["fx_rates"].name == "fx_rates"
    assert cat.pipelines["risk_scoring"].dag_id == "risk_scoring"
    with pytest.raises(ValidationError, match="remove `name:`"):
        catalog(datasets={"a": {"name": "b"}})


def test_unknown_keys_are_rejected_everywhere():
    with pytest.raises(ValidationError, match="fresness"):
        catalog(datasets={"x": {"fresness": "1h"}})
    with pytest.raises(ValidationError):
        Team(slack_channel="#x", escalaton=[])  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        EscalationStep.model_validate({"after": "5m", "chanel": "#x"})


def test_models_are_frozen():
    cat = catalog(datasets={"x": {}})
    with pytest.raises(ValidationError):
        cat.datasets["x"].team = "risk"  # type: ignore[misc]


def test_empty_catalog_has_defaults():
    cat = Catalog()
    assert cat.defaults.team == "platform"
    assert cat.cost.currency == "USD"
    assert cat.cost.rates.cpu_hour == Decimal("0.0416")
    assert cat.cost.resources_for_pool("anything") == cat.cost.default_resources


def test_pool_resources():
    cat = catalog(cost={"pools": {"heavy_etl": {"cpu": 6, "memory_gb": 12}}})
    assert cat.cost.resources_for_pool("heavy_etl").cpu == Decimal(6)
    assert cat.cost.resources_for_pool(None).memory_gb == Decimal(2)


# -- queries ----------------------------------------------------------------------------------


@pytest.fixture
def fintech() -> Catalog:
    return catalog(
        teams={"risk": {"slack_channel": "#r"}, "markets": {"slack_channel": "#m"}},
        pipelines={
            "risk_scoring": {"team": "risk"},
            "market_data_ingest": {"team": "markets"},
            "untended": {},
        },
        datasets={
            "market_data": {"produced_by": "s3://lake/prices", "team": "markets"},
            "fx_rates": {"produced_by": "market_data_ingest.fetch_fx_rates"},
            "scores": {"produced_by": "risk_scoring.publish_scores", "team": "markets"},
            "whole_run": {"produced_by": "risk_scoring", "upstream": ["scores"]},
            "report": {"upstream": ["whole_run", "fx_rates"]},
            "orphan": {"produced_by": "untended"},
            "risk_view": {"produced_by": "s3://lake/prices", "upstream": ["market_data"]},
        },
        defaults={"team": "risk"},
    )


def test_team_of_pipeline_falls_back_to_defaults(fintech):
    assert fintech.team_of_pipeline("risk_scoring") == "risk"
    assert fintech.team_of_pipeline("untended") == "risk"
    assert fintech.team_of_pipeline("not_in_catalog") == "risk"


def test_team_of_dataset_fallback_chain(fintech):
    assert fintech.team_of_dataset("scores") == "markets"  # its own team first
    assert fintech.team_of_dataset("fx_rates") == "markets"  # then its pipeline's
    assert fintech.team_of_dataset("whole_run") == "risk"
    assert fintech.team_of_dataset("orphan") == "risk"  # pipeline without team: defaults
    assert fintech.team_of_dataset("report") == "risk"  # no producer: defaults
    assert fintech.team_of_dataset("risk_view") == "risk"  # asset producer: defaults
    assert fintech.team_of_dataset("nope") == "risk"


def test_datasets_produced_by_dag_run_or_exact_task(fintech):
    names = lambda ds: [d.name for d in ds]  # noqa: E731
    assert names(fintech.datasets_produced_by("risk_scoring")) == ["whole_run"]
    assert names(fintech.datasets_produced_by("risk_scoring", "publish_scores")) == ["scores"]
    assert names(fintech.datasets_produced_by("risk_scoring", "load_positions")) == []
    assert names(fintech.datasets_produced_by("market_data_ingest")) == []
    assert names(fintech.datasets_produced_by("market_data_ingest", "fetch_fx_rates")) == [
        "fx_rates"
    ]
    assert names(fintech.datasets_for_asset("s3://lake/prices")) == ["market_data", "risk_view"]
    assert fintech.datasets_for_asset("s3://lake/other") == []


def test_lineage_is_transitive_and_sorted(fintech):
    assert fintech.downstream_of("scores") == ["report", "whole_run"]
    assert fintech.upstream_of("report") == ["fx_rates", "scores", "whole_run"]
    assert fintech.downstream_of("report") == []
    assert fintech.upstream_of("unknown") == []


def test_lineage_terminates_on_cycles():
    cat = catalog(datasets={"a": {"upstream": ["b"]}, "b": {"upstream": ["a"]}})
    assert cat.upstream_of("a") == ["b"]
    assert cat.downstream_of("a") == ["b"]
