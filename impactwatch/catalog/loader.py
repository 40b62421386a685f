"""Read a catalog YAML file into a `Catalog`, reporting every problem with file:line and a fix.

The YAML is composed into nodes first (so every value keeps its line; `yaml_limits` bounds the
file's size, nesting and alias expansion), turned into plain data while catching what PyYAML lets
through (duplicate keys), validated by the pydantic model, and then checked for cross-references
(`checks`), on every entry, even one with a bad field. Errors never surface as tracebacks.
"""

from __future__ import annotations

import copy
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from impactwatch.catalog.checks import Finding, Loc, semantic_findings, subject
from impactwatch.catalog.errors import finding_from_error
from impactwatch.catalog.model import Catalog
from impactwatch.catalog.yaml_limits import (
    MAX_FILE_BYTES,
    LimitedLoader,
    LimitError,
    TooLarge,
    read_capped,
)

_SEXAGESIMAL_TAGS = {"tag:yaml.org,2002:int", "tag:yaml.org,2002:float"}
_MERGE_TAG = "tag:yaml.org,2002:merge"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a catalog file, where it is, and what to do about it."""

    file: str
    line: int | None
    message: str
    fix: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.message} — fix: {self.fix}"


class CatalogError(Exception):
    """A catalog that cannot be used; `problems` lists everything wrong with it."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def load_catalog(path: str | Path) -> Catalog:
    """The catalog in `path`; raises `CatalogError` listing every problem (a missing or
    unreadable file included)."""
    catalog, problems = check_catalog(path)
    if problems or catalog is None:
        raise CatalogError(problems)
    return catalog


def check_catalog(
    path: str | Path, airflow_dag_ids: Collection[str] | None = None
) -> tuple[Catalog | None, list[Problem]]:
    """Read and check the catalog in `path`; see `parse_catalog`."""
    filename = str(path)
    try:
        text = read_capped(path)
    except TooLarge:
        return None, [
            Problem(
                filename,
                None,
                f"larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB",
                "point at the catalog YAML file (a catalog of 10,000 DAGs takes about 2 MiB)",
            )
        ]
    except FileNotFoundError:
        return None, [Problem(filename, None, "no such file", "check the path to the catalog")]
    except IsADirectoryError:
        return None, [Problem(filename, None, "is a directory", "point at the catalog YAML file")]
    except UnicodeDecodeError as exc:
        return None, [
            Problem(filename, None, f"not UTF-8 text ({exc.reason})", "save the file as UTF-8")
        ]
    except OSError as exc:
        reason = exc.strerror or str(exc)
        return None, [Problem(filename, None, f"cannot read it: {reason}", "check permissions")]
    return parse_catalog(text, filename, airflow_dag_ids)


def parse_catalog(
    text: str, filename: str = "<catalog>", airflow_dag_ids: Collection[str] | None = None
) -> tuple[Catalog | None, list[Problem]]:
    """The catalog in `text` and every problem found, sorted by line.

    The catalog is None when the text does not make a valid model; it is returned alongside
    cross-reference problems (unknown team, cycle, DAG not in Airflow), which callers that need
    a sound catalog must treat as fatal (`load_catalog` does).
    """
    try:
        loader = LimitedLoader(text)
        root = loader.get_single_node()
    except LimitError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark is not None else None
        return None, [Problem(filename, line, str(exc.problem), exc.fix)]
    except yaml.MarkedYAMLError as exc:
        return None, [_syntax_problem(filename, exc)]
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        return None, [
            Problem(
                filename,
                line,
                f"character {exc.character:#x} is not allowed in YAML",
                "remove it (control characters cannot appear in a YAML file)",
            )
        ]
    except yaml.YAMLError as exc:
        return None, [Problem(filename, None, f"YAML error: {exc}", "fix the YAML syntax")]
    if root is None or root.tag == "tag:yaml.org,2002:null":
        return Catalog(), []
    if not isinstance(root, yaml.MappingNode):
        return None, [
            Problem(
                filename,
                _line(root),
                "the catalog must be a mapping",
                "start with top-level keys such as teams:, datasets:, pipelines:, cost:",
            )
        ]

    findings: list[tuple[int | None, Finding]] = []
    data = _Builder(loader, findings).build(root, ())
    findings.extend((_locate(root, f.loc), f) for f in _names_differing_from_keys(data))
    catalog: Catalog | None = None
    try:
        catalog = Catalog.model_validate(data)
        checked, broken = catalog, []
    except ValidationError as exc:
        errors = exc.errors()
        for error in errors:
            finding = finding_from_error(error, _matched_depth(root, error["loc"]))
            findings.append((_locate(root, error["loc"]), finding))
        checked, broken = _salvage(data, errors)
    if checked is not None:
        findings.extend(
            (_locate(root, f.loc), f)
            for f in semantic_findings(checked, airflow_dag_ids)
            if not any(f.loc[: len(b)] == b for b in broken)
        )
    problems = [Problem(filename, line, f.message, f.fix) for line, f in findings]
    problems.sort(key=lambda p: (p.line is None, p.line or 0))  # file-wide ones last
    return catalog, problems


_ENTRY_SECTIONS = ("teams", "datasets", "pipelines")
_PLACEHOLDERS: dict[str, dict[str, Any]] = {
    "teams": {"slack_channel": "#placeholder"},
    "datasets": {},
}
_SALVAGE_ROUNDS = 8  # deeper than the schema: each round takes out one level more


def _salvage(data: dict[str, Any], errors: list[Any]) -> tuple[Catalog | None, list[Loc]]:
    """The catalog with each bad value taken out, to cross-check everything else in one pass.

    A bad value is dropped (its default applies) or, when required, given a placeholder, else
    its parent goes; a bad list item takes its list along (later items keep their index, so
    their lines stay right). A broken team or data product stays as a bare placeholder so
    references to it are not reported twice. Findings at or under a returned location are
    already covered.
    """
    pruned = copy.deepcopy(data)
    broken: list[Loc] = []
    for _ in range(_SALVAGE_ROUNDS):
        for error in errors:
            unit = _unit(pruned, tuple(error["loc"]))
            if not unit:
                return None, broken
            if unit not in broken:
                broken.append(unit)
            _take_out(pruned, unit)
        try:
            return Catalog.model_validate(pruned), broken
        except ValidationError as exc:
            errors = exc.errors()
    return None, broken


def _unit(data: Any, loc: Loc) -> Loc:
    """What to take out for an error at `loc`: the deepest part of it present in `data` (the
    parent, for a missing key), never a list item."""
    unit: list[str | int] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and str(part) in node:
            unit.append(str(part))
            node = node[str(part)]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            unit.append(part)
            node = node[part]
        else:
            break
    while unit and isinstance(unit[-1], int):
        unit.pop()
    return tuple(unit)


def _take_out(data: dict[str, Any], unit: Loc) -> None:
    parent: Any = data
    for part in unit[:-1]:
        parent = parent[part]
    key = unit[-1]
    section = str(unit[0])
    if len(unit) == 2 and section in _PLACEHOLDERS:
        parent[key] = dict(_PLACEHOLDERS[section])
    elif len(unit) == 3 and key in _PLACEHOLDERS.get(section, {}):
        parent[key] = _PLACEHOLDERS[section][str(key)]
    elif isinstance(parent, dict):
        parent.pop(key, None)


def _syntax_problem(filename: str, exc: yaml.MarkedYAMLError) -> Problem:
    mark = exc.problem_mark or exc.context_mark
    what = " ".join(part for part in (exc.context, exc.problem) if part)
    fix = "fix the YAML syntax here (indentation, colons, quotes)"
    if "cannot start any token" in what or "mapping values are not allowed" in what:
        fix = 'quote the value, e.g. mention: "@risk-oncall" or title: "Risk: daily"'
    elif "expected a single document" in what:
        fix = "keep one YAML document per catalog file (remove the extra ---)"
    return Problem(filename, mark.line + 1 if mark else None, f"YAML syntax error: {what}", fix)


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


class _Builder:
    """Plain data from composed nodes, noting duplicate keys (PyYAML silently keeps the last).

    Keys are always their source text (so `on:` or `2024:` stay names), and unquoted times like
    06:00 stay text instead of YAML 1.1 base-60 numbers.
    """

    def __init__(self, loader: yaml.SafeLoader, findings: list[tuple[int | None, Finding]]):
        self.loader = loader
        self.findings = findings

    def build(self, node: yaml.Node, loc: Loc) -> Any:
        # Finite: LimitedLoader refused recursive aliases, deep nesting and large expansions.
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, loc)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*loc, i)) for i, item in enumerate(node.value)]
        if node.tag in _SEXAGESIMAL_TAGS and node.style is None and ":" in node.value:
            return node.value
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            self._note(node, loc, f"unreadable value: {exc}", "quote the value")
            return None
        except (ValueError, OverflowError):  # a date like 2024-13-45, an int of 5,000 digits
            return node.value  # as text: the model says whether text fits here

    def _mapping(self, node: yaml.MappingNode, loc: Loc) -> dict[str, Any]:
        first_line: dict[str, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG or not isinstance(key_node, yaml.ScalarNode):
                continue
            key = key_node.value
            if key in first_line:
                self._note(
                    key_node,
                    loc,
                    f"duplicate key {key!r} (first at line {first_line[key]})",
                    "keep one of them: YAML silently uses only the last",
                )
            else:
                first_line[key] = _line(key_node)
        try:
            self.loader.flatten_mapping(node)  # apply `<<: *anchor` merges
        except yaml.YAMLError as exc:
            self._note(node, loc, f"bad merge key: {exc}", "merge only mappings with <<: *anchor")
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                self._note(key_node, loc, "a key must be plain text", "write the key as a name")
                continue
            result[key_node.value] = self.build(value_node, (*loc, key_node.value))
        return result

    def _note(self, node: yaml.Node, loc: Loc, message: str, fix: str) -> None:
        where = subject(loc)
        finding = Finding(loc, f"{where}: {message}" if where else message, fix)
        self.findings.append((_line(node), finding))


def _names_differing_from_keys(data: dict[str, Any]) -> list[Finding]:
    """`name:` / `dag_id:` written inside an entry and different from its key; the key wins."""
    findings = []
    for section, field in (("datasets", "name"), ("pipelines", "dag_id")):
        entries = data.get(section)
        if not isinstance(entries, dict):
            continue
        for key, body in entries.items():
            if isinstance(body, dict) and field in body and body[field] != key:
                findings.append(
                    Finding(
                        (section, key, field),
                        f"{subject((section, key))}: {field} {body[field]!r} differs from its key",
                        f"remove `{field}:`; the key ({key}) is the {field}",
                    )
                )
                entries[key] = {**body, field: key}
    return findings


def _walk(root: yaml.Node, loc: tuple[Any, ...]) -> tuple[yaml.Node, int, int | None]:
    """The deepest node on `loc`, how many parts of `loc` it matched, and its key's line."""
    node, depth, line = root, 0, None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            # Search from the end: with `<<` merges, the last key is the one that counts.
            pair = next(
                (
                    (k, v)
                    for k, v in reversed(node.value)
                    if isinstance(k, yaml.ScalarNode) and k.value == str(part)
                ),
                None,
            )
            if pair is None:
                break
            line, node = _line(pair[0]), pair[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if not 0 <= part < len(node.value):
                break
            node = node.value[part]
            line = _line(node)
        else:
            break
        depth += 1
    return node, depth, line


def _locate(root: yaml.Node, loc: tuple[Any, ...]) -> int | None:
    """1-based line of what `loc` points at (or of its deepest existing parent)."""
    return _walk(root, loc)[2]


def _matched_depth(root: yaml.Node, loc: tuple[Any, ...]) -> int:
    return _walk(root, loc)[1]
