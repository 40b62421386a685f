"""Catalog files written to hurt: alias bombs, deep nesting, huge files, absurd durations; and
every problem of an entry reported in one run. Each answer is a file:line and a fix, at once."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from impactwatch.catalog.loader import Problem, check_catalog, parse_catalog
from impactwatch.catalog.yaml_limits import (
    MAX_DEPTH,
    MAX_FILE_BYTES,
    MAX_VALUES,
    LimitedLoader,
    LimitError,
)

ROOT = Path(__file__).resolve().parents[2]


def problems(text: str) -> list[Problem]:
    _, found = parse_catalog(textwrap.dedent(text), "cat.yaml")
    return found


def catalog_check(path: Path, timeout: float = 60) -> tuple[int, str, float]:
    """`impactwatch catalog check PATH` as a user runs it: exit code, stderr, seconds taken."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "impactwatch.cli", "catalog", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    return done.returncode, done.stderr, time.monotonic() - started


def laughs(levels: int) -> str:
    """The "billion laughs" file: each level nine aliases of the one before (9**levels)."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels + 1):
        refs = ",".join([f"*a{i - 1}"] * 9)
        lines.append(f"a{i}: &a{i} [{refs}]")
    return "\n".join(lines) + "\n"


# -- aliases ----------------------------------------------------------------------------------


def test_alias_bomb_is_refused_at_its_line_in_seconds(tmp_path):
    path = tmp_path / "laughs.yaml"
    path.write_text(laughs(9))
    assert path.stat().st_size < 600  # the file: 555 bytes, 9**9 values
    code, err, took = catalog_check(path)
    assert code == 1
    assert "Traceback" not in err
    first = err.splitlines()[0]
    # a4 holds 66,430 values (a_i = 1 + 9 a_(i-1)): a5 (line 6) crosses 400,000 at its 6th *a4
    assert first.startswith(f"{path}:6: the catalog grows past {MAX_VALUES:,} keys and values")
    assert "(alias *a4 adds 66,430)" in first
    assert "fix: write entries out instead of nesting aliases in aliases" in first
    assert took < 20, f"took {took:.1f}s"


def test_expansion_is_counted_exactly():
    text = "a: &a [1, 2, 3]\nb: [*a, *a]\n"  # 1 + (1 + 4) + (1 + 1 + 4 + 4) = 16
    LimitedLoader(text, max_values=16).get_single_node()
    with pytest.raises(LimitError) as caught:
        LimitedLoader(text, max_values=15).get_single_node()
    assert caught.value.problem_mark is not None
    assert (caught.value.problem_mark.line, caught.value.problem_mark.column) == (1, 8)


def test_merge_keys_repeated_are_counted_too():
    lines = ["x0: &x0 {a: 1, b: 2, c: 3}"]
    for i in range(1, 12):  # x_i = 3 + 8 x_(i-1) values: x5 = 243,419; 8**11 pairs unchecked
        lines.append(f"x{i}: &x{i} {{<<: [{', '.join([f'*x{i - 1}'] * 8)}]}}")
    found = problems("\n".join(lines) + "\n")
    assert [(p.line, p.message) for p in found] == [
        (7, f"the catalog grows past {MAX_VALUES:,} keys and values here (alias *x5 adds 243,419)")
    ]


def test_recursive_alias_is_refused_with_its_line():
    found = problems("""\
        teams:
          risk: &risk
            slack_channel: "#risk"
            also: *risk
        """)
    assert [(p.line, p.message) for p in found] == [
        (4, "alias *risk refers to a value that contains it")
    ]


def test_anchors_used_as_meant_still_work():
    catalog, found = parse_catalog(
        textwrap.dedent("""\
        teams:
          risk: &team {slack_channel: "#risk", escalation: &steps [{after: 30m, channel: "#i"}]}
          markets: {<<: *team, slack_channel: "#markets", escalation: *steps}
        defaults: {team: risk}
        """)
    )
    assert found == []
    assert catalog is not None
    assert catalog.teams["markets"].escalation[0].after == 1800


# -- nesting ----------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [MAX_DEPTH, 5_000, 200_000])
def test_deep_flow_nesting_is_a_problem_with_a_line(tmp_path, depth):
    path = tmp_path / "deep.yaml"
    path.write_text("teams: {}\ndatasets:\n  x: {upstream: " + "[" * depth + "]" * depth + "}\n")
    code, err, _ = catalog_check(path)
    assert code == 1
    assert "Traceback" not in err and "RecursionError" not in err
    assert err.splitlines()[0] == (
        f"{path}:3: values nested deeper than {MAX_DEPTH} levels — fix: flatten it: a catalog "
        "needs 6 levels at most (teams > team > escalation > step > after)"
    )


def test_deep_block_nesting_names_the_line_that_goes_too_deep():
    text = "".join(f"{'  ' * i}k{i}:\n" for i in range(MAX_DEPTH + 5))
    found = problems(text)
    assert len(found) == 1
    assert found[0].line == MAX_DEPTH  # the root mapping is level 1; line N opens level N + 1
    assert "nested deeper" in found[0].message


def test_nesting_through_aliases_counts_too():
    inner = "[" * 20 + "]" * 20
    text = f"a: &a {inner}\nb: &b {'[' * 15}*a{']' * 15}\n"
    found = problems(text)
    assert [(p.line, p.message) for p in found] == [
        (2, f"values nested deeper than {MAX_DEPTH} levels")
    ]


# -- size -------------------------------------------------------------------------------------


def test_a_file_over_the_size_cap_is_refused_unread(tmp_path):
    path = tmp_path / "huge.yaml"
    with path.open("wb") as fh:
        fh.write(b"teams: {}\n# " + b"x" * MAX_FILE_BYTES + b"\n")
    catalog, found = check_catalog(path)
    assert catalog is None
    assert [(p.line, p.message) for p in found] == [(None, "larger than 4 MiB")]


def test_an_endless_device_is_refused_not_read_forever():
    code, err, took = catalog_check(Path("/dev/zero"), timeout=30)
    assert code == 1
    assert err.startswith("/dev/zero: larger than 4 MiB — fix: point at the catalog YAML file")
    assert took < 20


def test_windows_and_old_mac_line_ends_keep_their_lines():
    found = parse_catalog("teams: {}\r\ndatasets:\r\n  x: {tier: gold}\r\n", "c")[1]
    assert [(p.line, p.message[:20]) for p in found] == [(3, "dataset 'x': tier: '")]


def test_values_yaml_cannot_construct_are_read_as_text():
    catalog, found = parse_catalog(
        "datasets:\n  x: {title: 2024-13-45}\n  y: {freshness: 2024-13-45}\n"
        f"cost:\n  top_tasks: {'9' * 5000}\n"
    )
    assert [(p.line, p.message[:50]) for p in found] == [
        (3, "dataset 'y': freshness: '2024-13-45' is not a dura"),
        (5, "cost.top_tasks: expected a whole number, got '9999"),
    ]
    assert found[1].fix == "write a whole number"
    assert catalog is None


# -- durations --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "message"),
    [
        ("0s", "'0s' is too short"),
        ("0", "0 (seconds) is too short"),
        ("0.5", "0.5 (seconds) is too short"),
        ("367d", "'367d' is too long"),
        ("99999999999w", "'99999999999w' is too long"),
        ("31622401", "31622401 (seconds) is too long"),
        (".inf", "inf is not a duration"),
        (".nan", "nan is not a duration"),
        ("-5", "-5 is negative"),
    ],
)
def test_durations_outside_a_second_and_366_days_are_refused(written, message):
    found = problems(f"""\
        datasets:
          x: {{freshness: {written}}}
        """)
    assert [(p.line, p.message) for p in found] == [(2, f"dataset 'x': freshness: {message}")]


@pytest.mark.parametrize(("written", "seconds"), [("1s", 1), ("1", 1), ("366d", 366 * 86400)])
def test_durations_at_the_bounds_pass(written, seconds):
    catalog, found = parse_catalog(f"pipelines:\n  p: {{max_duration: {written}}}\n")
    assert found == []
    assert catalog is not None and catalog.pipelines["p"].max_duration == seconds


# -- every problem of an entry, at once -------------------------------------------------------


def test_every_problem_of_one_entry_in_one_run(tmp_path):
    path = tmp_path / "impact.yaml"
    path.write_text(
        textwrap.dedent("""\
        teams:
          risk:
            slack_channel: 42
            escalation:
              - {after: 1h, channel: "#inc"}
              - {after: 30m}
        datasets:
          scores:
            team: rsk
            tier: gold
            freshness: 0s
            upstream: [prices]
        pipelines:
          scoring:
            team: finance
            max_duration: 400d
            deadline: "25:00"
        defaults: {team: risk}
        """)
    )
    code, err, _ = catalog_check(path)
    assert code == 1
    assert err.splitlines() == [
        f"{path}:3: team 'risk': slack_channel: expected text, got 42 — fix: write text",
        f"{path}:6: team 'risk': escalation step 2 neither posts nor mentions anyone — fix: "
        'add channel: "#data-incidents" and/or mention: "@team-oncall"',
        f"{path}:6: team 'risk': escalation step 2 fires after 30m, before the step above it "
        "(1h) — fix: order the steps by `after`, shortest first",
        f"{path}:9: dataset 'scores': unknown team 'rsk' — fix: did you mean 'risk'? Known "
        "teams: risk (or add it under teams:)",
        f"{path}:10: dataset 'scores': tier: 'gold' is not one of critical, high, standard — "
        "fix: use one of: critical, high, standard",
        f"{path}:11: dataset 'scores': freshness: '0s' is too short — fix: write between 1s "
        "and 366d, e.g. 30m or 2h",
        f"{path}:12: dataset 'scores': unknown upstream data product 'prices' — fix: use one "
        "of: scores (or add it under datasets:)",
        f"{path}:15: pipeline 'scoring': unknown team 'finance' — fix: use one of: risk (or "
        "add it under teams:)",
        f"{path}:16: pipeline 'scoring': max_duration: '400d' is too long — fix: write between"
        " 1s and 366d, e.g. 30m or 2h",
        f"{path}:17: pipeline 'scoring': deadline: '25:00' is not a deadline — fix: write "
        'HH:MM and a time zone, e.g. "06:00 Europe/London" (quoted)',
        f"10 problems in {path}",
    ]


def test_a_bad_list_item_does_not_move_the_lines_of_the_next():
    found = problems("""\
        datasets:
          a: {}
          b:
            upstream:
              - 42
              - missing
        """)
    # the list went with its bad item: no finding points at the wrong item's line
    assert [(p.line, p.message) for p in found] == [
        (5, "dataset 'b': upstream[0]: expected text, got 42")
    ]


def test_limits_are_loader_errors_pyyaml_knows():
    assert issubclass(LimitError, yaml.MarkedYAMLError)
