"""Write the generated tree to a folder; remove generated files that are no longer generated.

Only files carrying the generated marker are ever removed (a dropped data product's runbook,
say): anything a person put in the folder stays.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from impactwatch.alert_rules.render import GENERATED

_MANAGED = (".yml", ".md")


@dataclass
class WriteResult:
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def _is_generated(path: Path) -> bool:
    try:
        head = path.read_text(encoding="utf-8")[:400]
    except (OSError, UnicodeDecodeError):
        return False
    return GENERATED in head


def write_tree(out: Path, files: Mapping[str, str]) -> WriteResult:
    result = WriteResult()
    out.mkdir(parents=True, exist_ok=True)
    for rel, text in files.items():
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_file() and target.read_text(encoding="utf-8") == text:
            result.unchanged.append(rel)
            continue
        target.write_text(text, encoding="utf-8")
        result.written.append(rel)
    for path in sorted(out.rglob("*")):
        rel = path.relative_to(out).as_posix()
        if path.is_file() and path.suffix in _MANAGED and rel not in files and _is_generated(path):
            path.unlink()
            result.removed.append(rel)
    return result


def differences(out: Path, files: Mapping[str, str]) -> list[str]:
    """What differs between `out` and `files`: changed, missing and extra generated files."""
    problems = []
    for rel, text in files.items():
        target = out / rel
        if not target.is_file():
            problems.append(f"missing: {rel}")
        elif target.read_bytes() != text.encode("utf-8"):
            problems.append(f"differs: {rel}")
    for path in sorted(out.rglob("*")):
        rel = path.relative_to(out).as_posix()
        if path.is_file() and rel not in files and _is_generated(path):
            problems.append(f"no longer generated: {rel}")
    return problems
