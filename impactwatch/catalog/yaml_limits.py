"""Bounds on what a catalog file may cost to read: its size, its nesting, its alias expansion.

PyYAML composes aliases into shared nodes, and anything walking the result visits a shared node
once per alias: nine lines of nested aliases ("billion laughs") make billions of values. Deep
nesting makes every recursive walker (PyYAML's composer, the loader's builder) hit Python's
recursion limit. `LimitedLoader` counts as it composes, so a hostile file is refused at the line
where it crosses a limit, before anything expands it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.events import AliasEvent

MAX_FILE_BYTES = 4 * 1024 * 1024
"""A catalog of 10,000 pipelines and 10,000 data products takes 2.2 MB."""
MAX_DEPTH = 32
"""Levels of nesting, aliases expanded; the catalog's own schema needs 6."""
MAX_VALUES = 400_000
"""Keys and values once every alias is expanded (a value reached through N aliases counts N
times); the 20,000-entry catalog above has 211,000. PyYAML composes about 40,000 a second in
some 300 bytes each, so this bounds a load to seconds and a few hundred MB."""


class LimitError(yaml.MarkedYAMLError):
    """The file crosses one of the limits above; `fix` says what to do."""

    def __init__(self, mark: yaml.Mark, problem: str, fix: str) -> None:
        super().__init__(problem=problem, problem_mark=mark)
        self.fix = fix


class TooLarge(Exception):
    """The file is larger than `MAX_FILE_BYTES`."""


def read_capped(path: str | Path, limit: int = MAX_FILE_BYTES) -> str:
    """The UTF-8 text of `path`, newlines made "\\n" as `Path.read_text` would; reads at most
    `limit` + 1 bytes, so a huge file or a device such as /dev/zero costs no more than that.

    Raises `TooLarge`, `UnicodeDecodeError` or `OSError`."""
    with open(path, "rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise TooLarge
    return data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")


class LimitedLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader that refuses, with the line, a recursive alias, nesting deeper than
    `max_depth` and more than `max_values` values once aliases are expanded."""

    def __init__(
        self, stream: str, *, max_depth: int = MAX_DEPTH, max_values: int = MAX_VALUES
    ) -> None:
        super().__init__(stream)
        self.max_depth = max_depth
        self.max_values = max_values
        self._values = 0  # values composed so far, every alias counted at its target's size
        self._size: dict[int, int] = {}  # finished node -> its values, aliases expanded
        self._height: dict[int, int] = {}  # finished node -> its levels, aliases expanded
        self._below: list[int] = []  # per open node: the greatest height of a child so far

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        if self.check_event(AliasEvent):
            event = self.peek_event()
            target = self.anchors.get(event.anchor)
            if target is not None:  # (an undefined alias: PyYAML's own error)
                self._alias(target, event.anchor, event.start_mark)
            return super().compose_node(parent, index)
        mark = self.peek_event().start_mark
        self._nest(1, mark)
        before = self._values
        self._count(1, mark)
        self._below.append(0)
        node = super().compose_node(parent, index)
        height = self._below.pop() + 1
        self._size[id(node)] = self._values - before
        self._height[id(node)] = height
        if self._below:
            self._below[-1] = max(self._below[-1], height)
        return node

    def _alias(self, target: yaml.Node, anchor: str, mark: yaml.Mark) -> None:
        if id(target) not in self._size:  # still being composed: the alias is inside it
            raise LimitError(
                mark,
                f"alias *{anchor} refers to a value that contains it",
                f"remove *{anchor} here: a catalog cannot contain itself",
            )
        height = self._height[id(target)]
        self._nest(height, mark)
        self._count(self._size[id(target)], mark, anchor)
        if self._below:
            self._below[-1] = max(self._below[-1], height)

    def _nest(self, height: int, mark: yaml.Mark) -> None:
        if len(self._below) + height > self.max_depth:
            raise LimitError(
                mark,
                f"values nested deeper than {self.max_depth} levels",
                "flatten it: a catalog needs 6 levels at most (teams > team > escalation > "
                "step > after)",
            )

    def _count(self, values: int, mark: yaml.Mark, anchor: str | None = None) -> None:
        self._values += values
        if self._values > self.max_values:
            through = f" (alias *{anchor} adds {values:,})" if anchor else ""
            raise LimitError(
                mark,
                f"the catalog grows past {self.max_values:,} keys and values here{through}",
                "write entries out instead of nesting aliases in aliases"
                if anchor
                else "keep the catalog to what Airflow runs; this is far larger than any real one",
            )
