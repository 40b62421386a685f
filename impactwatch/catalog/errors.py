"""Pydantic validation errors in the catalog's words: what is wrong, where, and the fix."""

from __future__ import annotations

import difflib
import types
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel

from impactwatch.catalog.checks import Finding, Loc, subject
from impactwatch.catalog.model import Catalog

_NOUNS = {
    "string": "text",
    "int": "a whole number",
    "float": "a number",
    "decimal": "a number",
    "bool": "true or false",
    "dict": "a mapping (key: value lines)",
    "model": "a mapping (key: value lines)",
    "model_attributes": "a mapping (key: value lines)",
    "list": "a list, e.g. [a, b]",
}
_EXAMPLES = {"slack_channel": '"#team-alerts"', "after": "30m", "cpu": "2", "memory_gb": "4"}
_FROM_KEYS = {"name", "dag_id"}  # filled from the mapping key, never written


def finding_from_error(error: Any, depth: int) -> Finding:
    """A pydantic error dict as a finding; `depth` is how much of its loc exists in the YAML."""
    loc: Loc = tuple(error["loc"])
    kind: str = error["type"]
    given = error.get("input")
    if kind in ("extra_forbidden", "missing"):
        where, key = subject(loc[:-1]), str(loc[-1])
        allowed = _allowed_keys(loc[:-1])
        if kind == "missing":
            message = f"missing key {key!r}"
            fix = f"add `{key}: {_EXAMPLES.get(key, '...')}`"
        else:
            message = f"unknown key {key!r}"
            close = difflib.get_close_matches(key, allowed, n=1)
            listed = f"allowed keys: {', '.join(allowed)}"
            fix = f"did you mean {close[0]!r}? {listed}" if close else f"remove it; {listed}"
        return Finding(loc, f"{where}: {message}" if where else message, fix)
    where = subject(loc[: max(depth, 1)])
    message, fix = _describe(kind, error, given)
    return Finding(loc, f"{where}: {message}" if where else message, fix)


def _describe(kind: str, error: Any, given: Any) -> tuple[str, str]:
    ctx = error.get("ctx") or {}
    if kind == "value_error":
        text = str(ctx.get("error") or error["msg"]).removeprefix("Value error, ")
        message, _, fix = text.partition("; ")
        return message, fix or "correct the value"
    if kind == "literal_error":
        choices = str(ctx.get("expected", "")).replace("'", "").replace(" or ", ", ")
        return f"{_short(given)} is not one of {choices}", f"use one of: {choices}"
    if kind in ("greater_than_equal", "greater_than"):
        bound = ctx.get("ge", ctx.get("gt"))
        word = "zero" if str(bound) == "0" else str(bound)
        fix = f"use {word} or more" if kind == "greater_than_equal" else f"use more than {word}"
        return f"{_short(given)} is too small", fix
    if kind in ("less_than_equal", "less_than"):
        return f"{_short(given)} is too large", f"use at most {ctx.get('le', ctx.get('lt'))}"
    if kind == "finite_number":
        return f"{_short(given)} is not a finite number", "write a number such as 0.0416"
    if kind == "string_too_short":
        return "is empty", "write a value"
    noun = next((n for k, n in _NOUNS.items() if kind.startswith(f"{k}_")), None)
    if noun is not None:
        if given is None:
            return (
                f"expected {noun}, got nothing",
                'write a value; quote values that start with # or @, e.g. "#risk-alerts"',
            )
        return f"expected {noun}, got {_short(given)}", f"write {noun}"
    return str(error["msg"]), "correct the value"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _allowed_keys(loc: Loc) -> list[str]:
    model = _model_at(loc)
    if model is None:
        return []
    return [name for name in model.model_fields if name not in _FROM_KEYS]


def _model_at(loc: Loc) -> type[BaseModel] | None:
    """The model class that validates the mapping at `loc` in a catalog."""
    kind: Any = Catalog
    for part in loc:
        kind = _unwrap(kind)
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            field = kind.model_fields.get(str(part))
            if field is None:
                return None
            kind = field.annotation
        elif get_origin(kind) is dict:
            kind = get_args(kind)[1]
        elif get_origin(kind) is list:
            kind = get_args(kind)[0]
        else:
            return None
    kind = _unwrap(kind)
    return kind if isinstance(kind, type) and issubclass(kind, BaseModel) else None


def _unwrap(kind: Any) -> Any:
    """X from Annotated[X, ...] and from X | None."""
    origin = get_origin(kind)
    if origin is Annotated:
        return _unwrap(get_args(kind)[0])
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(kind) if a is not type(None)]
        return _unwrap(args[0]) if len(args) == 1 else kind
    return kind
