"""The catalog loader: every problem at once, each with its file:line and a fix; and `run_check`."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from impactwatch.catalog.cli import run_check
from impactwatch.catalog.loader import (
    CatalogError,
    Problem,
    check_catalog,
    load_catalog,
    parse_catalog,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "catalog.yaml"
EXAMPLE_DAGS = {
    "market_data_ingest",
    "risk_scoring",
    "regulatory_submission",
    "morning_reporting",
    "nightly_heavy_etl",
    "payments_reconciliation",
}


def problems(text: str, **kwargs) -> list[Problem]:
    _, found = parse_catalog(textwrap.dedent(text), "cat.yaml", **kwargs)
    return found


def only(text: str, **kwargs) -> Problem:
    found = problems(text, **kwargs)
    assert len(found) == 1, "\n".join(map(str, found))
    return found[0]


# -- valid catalogs ---------------------------------------------------------------------------


def test_example_catalog_has_no_problems():
    catalog, found = check_catalog(EXAMPLE, EXAMPLE_DAGS)
    assert found == []
    assert catalog is not None
    assert (len(catalog.teams), len(catalog.datasets), len(catalog.pipelines)) == (6, 9, 6)
    assert catalog.defaults.team == "platform"
    assert catalog.pipelines["regulatory_submission"].deadline is not None
    assert str(catalog.pipelines["regulatory_submission"].deadline) == "07:00 Europe/London"
    assert catalog.pipelines["nightly_heavy_etl"].cost_basis == "reserved"
    assert catalog.datasets["customer_risk_scores"].freshness == 90 * 60
    assert catalog.downstream_of("market_data") == [
        "customer_risk_scores",
        "daily_kpi_report",
        "executive_pack",
        "regulatory_submission",
    ]
    assert load_catalog(EXAMPLE) == catalog


@pytest.mark.parametrize("text", ["", "\n# only a comment\n", "{}", "---\n"])
def test_empty_file_is_an_empty_catalog(text):
    catalog, found = parse_catalog(text)
    assert found == []
    assert catalog is not None
    assert catalog.datasets == {}


def test_unquoted_time_and_odd_keys_stay_text():
    catalog, found = parse_catalog(
        textwrap.dedent("""\
        datasets:
          on: {title: Switch}
          2024: {}
        pipelines:
          p: {deadline: 06:30}
        """)
    )
    assert found == []
    assert catalog is not None
    assert set(catalog.datasets) == {"on", "2024"}
    assert str(catalog.pipelines["p"].deadline) == "06:30 UTC"


def test_anchors_and_merge_keys_work():
    catalog, found = parse_catalog(
        textwrap.dedent("""\
        teams:
          risk: &team {slack_channel: "#risk", escalation: [{after: 30m, channel: "#inc"}]}
          markets:
            <<: *team
            slack_channel: "#markets"
        defaults: {team: risk}
        """)
    )
    assert found == []
    assert catalog is not None
    assert catalog.teams["markets"].slack_channel == "#markets"
    assert catalog.teams["markets"].escalation[0].after == 1800


# -- every problem kind, with its line ------------------------------------------------------


def test_yaml_syntax_error_has_pyyaml_line():
    problem = only("""\
        teams:
          risk:
            slack_channel: "#risk"
             escalation: []
        """)
    assert problem.line == 4
    assert "YAML syntax error" in problem.message


def test_control_characters_and_byte_order_mark():
    problem = only("teams: {}\ndatasets:\x00\n")
    assert (problem.line, problem.message) == (2, "character 0x0 is not allowed in YAML")
    assert problems("\ufeffdatasets: {}\n") == []


def test_unquoted_at_sign_suggests_quoting():
    problem = only("""\
        teams:
          risk:
            slack_channel: "#risk"
            escalation:
              - after: 5m
                mention: @risk-oncall
        """)
    assert problem.line == 6
    assert "quote the value" in problem.fix


def test_duplicate_keys_are_reported_at_the_second():
    problem = only("""\
        datasets:
          scores:
            title: Scores
          fx:
            title: FX
          scores:
            title: Scores again
        """)
    assert problem.line == 6
    assert problem.message == "datasets: duplicate key 'scores' (first at line 2)"


def test_duplicate_field_inside_an_entry():
    problem = only("""\
        datasets:
          scores:
            freshness: 1h
            freshness: 2h
        """)
    assert (problem.line, problem.message) == (
        4,
        "dataset 'scores': duplicate key 'freshness' (first at line 3)",
    )


def test_unknown_key_names_it_and_lists_the_allowed():
    problem = only("""\
        datasets:
          scores:
            title: Scores
            fresness: 30m
        """)
    assert problem.line == 4
    assert problem.message == "dataset 'scores': unknown key 'fresness'"
    assert problem.fix.startswith("did you mean 'freshness'? allowed keys: title, team, tier")
    assert "name" not in problem.fix.split("allowed keys: ")[1].split(", ")


def test_unknown_top_level_key():
    problem = only("dataset:\n  x: {}\n")
    assert (problem.line, problem.message) == (1, "unknown key 'dataset'")
    assert "did you mean 'datasets'?" in problem.fix


def test_wrong_types():
    found = problems("""\
        teams:
          risk:
            slack_channel: #risk-alerts
            digest: sometimes
        datasets:
          scores:
            upstream: market_data
        defaults: {team: risk}
        """)
    assert [(p.line, p.message) for p in found] == [
        (3, "team 'risk': slack_channel: expected text, got nothing"),
        (4, "team 'risk': digest: expected true or false, got 'sometimes'"),
        (7, "dataset 'scores': upstream: expected a list, e.g. [a, b], got 'market_data'"),
    ]
    assert 'quote values that start with # or @, e.g. "#risk-alerts"' in found[0].fix


def test_missing_required_key_points_at_its_parent():
    problem = only("""\
        teams:
          risk:
            escalation: []
        defaults: {team: risk}
        """)
    assert problem.line == 2
    assert problem.message == "team 'risk': missing key 'slack_channel'"
    assert problem.fix == 'add `slack_channel: "#team-alerts"`'


def test_bad_duration():
    found = problems("""\
        teams:
          risk:
            slack_channel: "#risk"
            escalation:
              - after: soon
        datasets:
          scores:
            freshness: 30 minutes
        defaults: {team: risk}
        """)
    assert [(p.line, p.message) for p in found] == [
        (5, "team 'risk': escalation[0].after: 'soon' is not a duration"),
        (8, "dataset 'scores': freshness: '30 minutes' is not a duration"),
    ]
    assert found[0].fix == "write it like 30m, 2h, 1h30m or 90s"


def test_bad_deadline_and_unknown_time_zone():
    found = problems("""\
        pipelines:
          reporting:
            deadline: "8 o'clock"
          submission:
            deadline:    "06:00 Europe/Londn"
        """)
    assert [(p.line, p.message) for p in found] == [
        (3, "pipeline 'reporting': deadline: \"8 o'clock\" is not a deadline"),
        (5, "pipeline 'submission': deadline: unknown time zone 'Europe/Londn'"),
    ]
    assert found[1].fix == "did you mean Europe/London?"


def test_unknown_team_in_datasets_pipelines_and_defaults():
    found = problems("""\
        teams:
          risk: {slack_channel: "#risk"}
          markets: {slack_channel: "#markets"}
        datasets:
          scores: {team: rsk}
        pipelines:
          risk_scoring:
            team: finance
        defaults:
          team: platform
        """)
    assert [(p.line, p.message) for p in found] == [
        (5, "dataset 'scores': unknown team 'rsk'"),
        (8, "pipeline 'risk_scoring': unknown team 'finance'"),
        (10, "defaults: unknown team 'platform'"),
    ]
    assert found[0].fix == (
        "did you mean 'risk'? Known teams: risk, markets (or add it under teams:)"
    )
    assert found[1].fix == "use one of: risk, markets (or add it under teams:)"


def test_without_defaults_unowned_things_alert_as_platform(tmp_path, capsys):
    text = 'teams:\n  risk: {slack_channel: "#risk"}\npipelines:\n  loose: {}\n'
    catalog, found = parse_catalog(text)
    assert found == []
    assert catalog is not None
    assert catalog.team_of_pipeline("loose") == "platform"
    assert catalog.team_of_pipeline("not_in_the_catalog") == "platform"
    path = tmp_path / "cat.yaml"
    path.write_text(text)
    assert run_check(str(path)) == 0
    out = capsys.readouterr().out
    assert "OK" in out
    assert "note: no defaults.team" in out and "IMPACTWATCH_ROUTER_FALLBACK_CHANNEL" in out
    path.write_text(text + "defaults: {team: risk}\n")
    assert run_check(str(path)) == 0
    assert "note" not in capsys.readouterr().out


def test_without_teams_any_team_name_is_a_label():
    assert problems("datasets:\n  x: {team: whoever}\n") == []


def test_unknown_upstream():
    problem = only("""\
        datasets:
          market_data: {}
          scores:
            upstream:
              - market_dta
        """)
    assert (problem.line, problem.message) == (
        5,
        "dataset 'scores': unknown upstream data product 'market_dta'",
    )
    assert problem.fix.startswith("did you mean 'market_data'?")


def test_upstream_cycle_is_named():
    found = problems("""\
        datasets:
          c: {upstream: [a]}
          a:
            upstream: [b]
          b:
            upstream: [c]
          self_made:
            upstream: [self_made]
        """)
    assert [(p.line, p.message) for p in found] == [
        (4, "dataset 'a': upstream cycle: a -> b -> c -> a"),
        (8, "dataset 'self_made': upstream cycle: self_made -> self_made"),
    ]


def test_missing_title_is_derived_not_an_error():
    catalog, found = parse_catalog("datasets:\n  customer_risk_scores: {tier: high}\n")
    assert found == []
    assert catalog is not None
    assert catalog.datasets["customer_risk_scores"].title == "Customer risk scores"


def test_tier_must_be_one_of_three():
    problem = only("""\
        datasets:
          scores:
            tier: urgent
        """)
    assert (problem.line, problem.message) == (
        3,
        "dataset 'scores': tier: 'urgent' is not one of critical, high, standard",
    )
    assert problem.fix == "use one of: critical, high, standard"


def test_negative_rates_and_bad_pools():
    found = problems("""\
        cost:
          rates:
            cpu_hour: -0.1
            memory_gb_hour: 0.0045
          pools:
            heavy_etl: {cpu: 6}
        """)
    assert [(p.line, p.message) for p in found] == [
        (3, "cost.rates.cpu_hour: -0.1 is too small"),
        (6, "cost.pools.heavy_etl: missing key 'memory_gb'"),
    ]
    assert found[0].fix == "use zero or more"


def test_bad_producer_and_name_differing_from_key():
    found = problems("""\
        datasets:
          scores:
            produced_by: {dag: risk_scoring, tsk: publish}
          fx:
            name: fx_rates
        """)
    assert [(p.line, p.message) for p in found] == [
        (3, "dataset 'scores': produced_by: unknown key(s) tsk in produced_by"),
        (5, "dataset 'fx': name 'fx_rates' differs from its key"),
    ]


def test_escalation_steps_must_act_and_be_in_order():
    found = problems("""\
        teams:
          risk:
            slack_channel: "#risk"
            escalation:
              - after: 1h
                channel: "#incidents"
              - after: 30m
                mention: "@oncall"
              - after: 2h
        defaults: {team: risk}
        """)
    assert [(p.line, p.message) for p in found] == [
        (7, "team 'risk': escalation step 2 fires after 30m, before the step above it (1h)"),
        (9, "team 'risk': escalation step 3 neither posts nor mentions anyone"),
    ]


def test_dag_ids_not_in_airflow_with_suggestion():
    found = problems(
        """\
        datasets:
          scores:
            produced_by: risk_scorin.publish_scores
          asset_made:
            produced_by: s3://lake/x
        pipelines:
          risk_scoring: {}
          old_dag: {}
        """,
        airflow_dag_ids={"risk_scoring", "market_data_ingest"},
    )
    assert [(p.line, p.message) for p in found] == [
        (3, "dataset 'scores': produced by DAG 'risk_scorin', which is not in Airflow"),
        (8, "pipeline 'old_dag': DAG 'old_dag' is not in Airflow"),
    ]
    assert found[0].fix == "did you mean 'risk_scoring'?"
    assert found[1].fix.startswith("check the DAG id; Airflow knows 2 DAG(s)")
    empty = problems("pipelines:\n  p: {}\n", airflow_dag_ids=set())
    assert "has the scheduler parsed the DAG folder?" in empty[0].fix


def test_every_problem_at_once_including_cross_references():
    found = problems("""\
        teams:
          risk: {slack_channel: "#risk"}
          broken: {slack_channel: 42}
        datasets:
          a: {team: rsk, freshness: never}
          b: {team: rsk, upstream: [a, missing]}
          c: {team: broken}
        defaults: {team: risk}
        """)
    assert [(p.line, p.message) for p in found] == [
        (3, "team 'broken': slack_channel: expected text, got 42"),
        (5, "dataset 'a': freshness: 'never' is not a duration"),
        (5, "dataset 'a': unknown team 'rsk'"),
        (6, "dataset 'b': unknown team 'rsk'"),
        (6, "dataset 'b': unknown upstream data product 'missing'"),
    ]


def test_top_level_must_be_a_mapping():
    problem = only("- teams\n- datasets\n")
    assert (problem.line, problem.message) == (1, "the catalog must be a mapping")


def test_problem_text_and_catalog_error():
    problem = Problem("c.yaml", 12, "dataset 'x': unknown team 'rsk'", "use one of: risk")
    assert str(problem) == "c.yaml:12: dataset 'x': unknown team 'rsk' — fix: use one of: risk"
    assert str(Problem("c.yaml", None, "no such file", "check")) == (
        "c.yaml: no such file — fix: check"
    )
    error = CatalogError([problem, problem])
    assert str(error).splitlines() == [str(problem), str(problem)]
    assert error.problems == [problem, problem]


def test_load_catalog_raises_with_every_problem(tmp_path):
    path = tmp_path / "impact.yaml"
    path.write_text("datasets:\n  a: {tier: x}\n  b: {freshness: y}\n")
    with pytest.raises(CatalogError) as caught:
        load_catalog(path)
    assert [p.line for p in caught.value.problems] == [2, 3]
    with pytest.raises(CatalogError, match="no such file"):
        load_catalog(tmp_path / "missing.yaml")
    with pytest.raises(CatalogError, match="is a directory"):
        load_catalog(tmp_path)
    (tmp_path / "latin1.yaml").write_bytes(b"datasets:\n  caf\xe9: {}\n")
    with pytest.raises(CatalogError, match="not UTF-8"):
        load_catalog(tmp_path / "latin1.yaml")


# -- run_check --------------------------------------------------------------------------------


def test_run_check_ok(capsys):
    assert run_check(str(EXAMPLE)) == 0
    out, err = capsys.readouterr()
    assert out == f"{EXAMPLE}: OK — 6 teams, 9 data products, 6 pipelines\n"
    assert err == ""


def test_run_check_reports_every_problem(tmp_path, capsys):
    path = tmp_path / "impact.yaml"
    path.write_text("datasets:\n  a: {tier: x}\n  b: {freshness: y}\n")
    assert run_check(str(path)) == 1
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert out == ""
    assert lines[0].startswith(f"{path}:2: dataset 'a': tier:")
    assert lines[1].startswith(f"{path}:3: dataset 'b': freshness:")
    assert lines[2] == f"2 problems in {path}"


def test_run_check_syntax_error_and_missing_file(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("teams:\n  risk: [unclosed\n")
    assert run_check(str(path)) == 1
    err = capsys.readouterr().err
    assert f"{path}:3: YAML syntax error" in err
    assert err.endswith(f"1 problem in {path}\n")
    assert "Traceback" not in err

    assert run_check(str(tmp_path / "nope.yaml")) == 1
    err = capsys.readouterr().err
    assert err == (
        f"{tmp_path / 'nope.yaml'}: no such file — fix: check the path to the catalog\n"
        f"1 problem in {tmp_path / 'nope.yaml'}\n"
    )


def test_run_check_against_an_airflow_db(tmp_path, capsys):
    import sqlite3

    db = tmp_path / "airflow.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE dag (dag_id TEXT PRIMARY KEY)")
        conn.executemany("INSERT INTO dag VALUES (?)", [(d,) for d in sorted(EXAMPLE_DAGS)])
    conn.close()
    assert run_check(str(EXAMPLE), f"sqlite:///{db}") == 0
    capsys.readouterr()

    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM dag WHERE dag_id = 'risk_scoring'")
    conn.close()
    assert run_check(str(EXAMPLE), f"sqlite:///{db}") == 1
    err = capsys.readouterr().err
    assert "pipeline 'risk_scoring': DAG 'risk_scoring' is not in Airflow" in err


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///{tmp}/missing.db",  # must not create the file either
        "sqlite:///{tmp}/empty.db",  # exists, but no dag table
        "not a url",
        "nosuchdialect://host/db",
        "postgresql+psycopg://user:secret@127.0.0.1:1/airflow",  # nothing listens on port 1
    ],
)
def test_run_check_unreachable_db_is_one_line_and_exit_2(tmp_path, capsys, url):
    (tmp_path / "empty.db").write_bytes(b"")
    assert run_check(str(EXAMPLE), url.format(tmp=tmp_path)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert len(err.splitlines()) == 1
    assert "secret" not in err
    assert not (tmp_path / "missing.db").exists()
