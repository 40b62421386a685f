"""Plain-text result tables and the few statistics the benchmarks print."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def p95(values: Sequence[float]) -> float:
    """95th percentile, nearest rank (with 30 samples: the second largest)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(int(-(-0.95 * len(ordered) // 1)), 1)  # ceil(0.95 n)
    return ordered[rank - 1]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain table: columns padded to their widest cell, numbers right-aligned."""
    cells = [[str(c) for c in header], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]

    def line(row: Sequence[str], numeric: Sequence[bool]) -> str:
        parts = [
            c.rjust(w) if num else c.ljust(w)
            for c, w, num in zip(row, widths, numeric, strict=True)
        ]
        return " | ".join(parts).rstrip()

    numeric = [
        any(_numeric(r[i]) for r in cells[1:])
        and all(_numeric(r[i]) or r[i] in ("", "-") for r in cells[1:])
        for i in range(len(header))
    ]
    out = [title, line(cells[0], [False] * len(header))]
    out.append("-+-".join("-" * w for w in widths))
    out.extend(line(r, numeric) for r in cells[1:])
    return "\n".join(out)


def _numeric(text: str) -> bool:
    head = text.split(" ")[0].replace(",", "").replace("x", "").replace("%", "")
    try:
        float(head)
    except ValueError:
        return False
    return True


@dataclass
class Verdicts:
    """The figure | measured | target | met? table every benchmark ends with."""

    rows: list[tuple[str, str, str, str]] = field(default_factory=list)

    def add(self, figure: str, measured: str, target: str, met: bool | None) -> None:
        verdict = "-" if met is None else ("yes" if met else "NO")
        self.rows.append((figure, measured, target, verdict))

    def render(self, title: str = "Results") -> str:
        return table(title, ("figure", "measured", "target", "met?"), self.rows)
