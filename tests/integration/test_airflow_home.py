"""The Airflow fixtures hold what the poller will read: real runs of every example DAG."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Connection, create_engine, inspect, text

pytestmark = pytest.mark.integration

EXAMPLE_DAGS = {
    "market_data_ingest",
    "risk_scoring",
    "regulatory_submission",
    "morning_reporting",
    "nightly_heavy_etl",
    "payments_reconciliation",
}


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
def db(request: pytest.FixtureRequest) -> Iterator[Connection]:
    """A connection to the populated Airflow DB, once per backend."""
    fixture = {"postgresql": "airflow_pg_url", "sqlite": "airflow_sqlite_url"}[request.param]
    engine = create_engine(request.getfixturevalue(fixture))
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


def rows(conn: Connection, query: str, **params: object) -> list[dict]:
    return [dict(r._mapping) for r in conn.execute(text(query), params)]


def test_every_example_dag_has_a_run(db: Connection) -> None:
    runs = rows(db, "SELECT dag_id, run_type, state FROM dag_run")
    assert {r["dag_id"] for r in runs} == EXAMPLE_DAGS
    market = sorted(r["state"] for r in runs if r["dag_id"] == "market_data_ingest")
    assert market == ["failed", "success"]
    others = [r["state"] for r in runs if r["dag_id"] != "market_data_ingest"]
    assert set(others) == {"success"}


def test_asset_triggered_run_has_no_logical_date(db: Connection) -> None:
    (run,) = rows(
        db,
        "SELECT run_id, run_type, triggered_by, logical_date, run_after FROM dag_run"
        " WHERE dag_id = 'risk_scoring'",
    )
    assert run["run_type"] == "asset_triggered"
    assert run["triggered_by"] == "ASSET"  # the enum's name, not its value
    assert run["logical_date"] is None
    assert run["run_after"] is not None
    consumed = rows(
        db,
        "SELECT e.source_dag_id FROM dagrun_asset_event l"
        " JOIN dag_run r ON r.id = l.dag_run_id JOIN asset_event e ON e.id = l.event_id"
        " WHERE r.dag_id = 'risk_scoring'",
    )
    assert consumed == [{"source_dag_id": "market_data_ingest"}]


def test_mapped_task_has_one_instance_per_segment(db: Connection) -> None:
    tis = rows(
        db,
        "SELECT map_index, state FROM task_instance"
        " WHERE dag_id = 'risk_scoring' AND task_id = 'score_customers' ORDER BY map_index",
    )
    assert tis == [{"map_index": i, "state": "success"} for i in range(3)]


def test_retried_task_keeps_its_first_try_in_history(db: Connection) -> None:
    where = "WHERE dag_id = 'regulatory_submission' AND task_id = 'submit_to_regulator'"
    (ti,) = rows(db, f"SELECT id, try_number, max_tries, state FROM task_instance {where}")
    assert (ti["try_number"], ti["max_tries"], ti["state"]) == (2, 1, "success")
    (earlier,) = rows(
        db, f"SELECT task_instance_id, try_number, state FROM task_instance_history {where}"
    )
    assert (earlier["try_number"], earlier["state"]) == (1, "failed")
    assert earlier["task_instance_id"] != ti["id"]  # each try has its own id


def test_failed_run_marks_downstream_upstream_failed(db: Connection) -> None:
    states = rows(
        db,
        "SELECT ti.task_id, ti.state FROM task_instance ti"
        " JOIN dag_run r ON r.dag_id = ti.dag_id AND r.run_id = ti.run_id"
        " WHERE r.dag_id = 'market_data_ingest' AND r.state = 'failed' ORDER BY ti.task_id",
    )
    assert {s["task_id"]: s["state"] for s in states} == {
        "fetch_fx_rates": "success",
        "fetch_prices": "success",
        "publish_market_data": "upstream_failed",
        "validate_market_data": "failed",
    }


def test_asset_events_and_declarations(db: Connection) -> None:
    events = rows(
        db,
        "SELECT a.name, e.source_dag_id, e.source_task_id FROM asset_event e"
        " JOIN asset a ON a.id = e.asset_id ORDER BY a.name",
    )
    assert events == [
        {
            "name": "customer_risk_scores",
            "source_dag_id": "risk_scoring",
            "source_task_id": "publish_scores",
        },
        {
            "name": "market_data",
            "source_dag_id": "market_data_ingest",
            "source_task_id": "publish_market_data",
        },
    ]
    outlets = rows(
        db,
        "SELECT a.name, a.uri, o.dag_id, o.task_id FROM task_outlet_asset_reference o"
        " JOIN asset a ON a.id = o.asset_id ORDER BY a.name",
    )
    assert [(o["name"], o["dag_id"], o["task_id"]) for o in outlets] == [
        ("customer_risk_scores", "risk_scoring", "publish_scores"),
        ("market_data", "market_data_ingest", "publish_market_data"),
    ]
    assert outlets[0]["uri"] == "s3://fintech-lake/risk/customer_scores"


def test_tags_pool_and_xcom(db: Connection) -> None:
    tags = {(r["dag_id"], r["name"]) for r in rows(db, "SELECT dag_id, name FROM dag_tag")}
    assert ("risk_scoring", "team:risk") in tags
    assert ("risk_scoring", "dataset:customer_risk_scores") in tags
    assert {d for d, name in tags if name.startswith("team:")} == EXAMPLE_DAGS
    (pool,) = rows(db, "SELECT slots FROM slot_pool WHERE pool = 'heavy_etl'")
    assert pool["slots"] == 2
    pools = rows(db, "SELECT DISTINCT pool FROM task_instance WHERE dag_id = 'nightly_heavy_etl'")
    assert pools == [{"pool": "heavy_etl"}]
    (xcom,) = rows(
        db,
        "SELECT value FROM xcom WHERE dag_id = 'nightly_heavy_etl' AND task_id = 'load_warehouse'",
    )
    value = xcom["value"]  # JSON: a str from jsonb (PostgreSQL) / the JSON text (SQLite)
    assert 1024 <= len(value) <= 1026


def test_migrated_variant_has_the_schema(airflow_pg_migrated_url: str) -> None:
    engine = create_engine(airflow_pg_migrated_url)
    try:
        tables = set(inspect(engine).get_table_names())
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM dag_run")).scalar() == 7
            indexes = {
                name: definition
                for name, definition in conn.execute(
                    text("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'dag_run'")
                )
            }
    finally:
        engine.dispose()
    assert {"dag_run", "task_instance", "task_instance_history", "asset_event"} <= tables
    assert "ab_user" in tables  # left over by the 2.x migrations, as on an upgraded DB
    assert "WHERE" not in indexes["idx_dag_run_running_dags"]  # full, not partial, index
