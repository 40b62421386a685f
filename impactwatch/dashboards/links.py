"""Stable dashboard addresses: UIDs, URL slugs, variables, and `dashboard_url` for the router.

Pure, standard library only, so the router (or anything else) can import it cheaply:

    >>> dashboard_url("https://grafana.example.com", "team", team="risk", dag_id="risk_scoring")
    'https://grafana.example.com/d/impactwatch-team/team?var-team=risk&var-dag_id=risk_scoring'

A dashboard's UID and its variable names are a public interface (Slack messages carry URLs built
from them): change them only with the router and the docs. Variable names equal the metric label
they filter (`team`, `tier`, `dataset`, `dag_id`, `pool`), so an alert's labels map straight to
URL parameters.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlencode

DATA_PRODUCTS = "data-products"
TEAM = "team"
PLATFORM = "platform"


@dataclass(frozen=True)
class Board:
    """One generated dashboard: where it lives and which URL variables it reads."""

    kind: str
    uid: str
    slug: str
    title: str
    variables: tuple[str, ...]

    @property
    def path(self) -> str:
        """The dashboard's path under Grafana's base URL: /d/<uid>/<slug>."""
        return f"/d/{self.uid}/{self.slug}"


BOARDS: dict[str, Board] = {
    DATA_PRODUCTS: Board(
        DATA_PRODUCTS,
        "impactwatch-data-products",
        "data-products",
        "Data products",
        ("team", "tier", "dataset"),
    ),
    TEAM: Board(TEAM, "impactwatch-team", "team", "Team", ("team", "dag_id")),
    PLATFORM: Board(
        PLATFORM, "impactwatch-platform", "platform-health", "Platform health", ("pool",)
    ),
}

_TIME_PARAMS = {"from_": "from", "to": "to"}

Value = str | int | float | Iterable[str] | None


def board(kind: str) -> Board:
    """The dashboard of `kind`; ValueError naming the kinds there are."""
    try:
        return BOARDS[kind]
    except KeyError:
        known = ", ".join(sorted(BOARDS))
        raise ValueError(f"no dashboard kind {kind!r}; use one of: {known}") from None


def _pairs(found: Board, params: dict[str, Value]) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for name, value in params.items():
        if value is None:
            continue
        if name in _TIME_PARAMS:
            key = _TIME_PARAMS[name]
        elif name in found.variables:
            key = f"var-{name}"
        else:
            allowed = ", ".join((*found.variables, *_TIME_PARAMS))
            raise ValueError(
                f"dashboard {found.kind!r} has no variable {name!r}; use one of: {allowed}"
            )
        values = [value] if isinstance(value, str | int | float) else list(value)
        pairs.extend((key, str(v)) for v in values)
    return pairs


def dashboard_url(base_url: str, kind: str, **params: Value) -> str:
    """The URL of dashboard `kind` ("data-products", "team", "platform") under Grafana's
    `base_url`, with `params` as its variables (a list gives several values; None is left out).
    `from_` and `to` set the time range (epoch milliseconds or Grafana's "now-6h")."""
    found = board(kind)
    query = urlencode(_pairs(found, params))
    return f"{base_url.rstrip('/')}{found.path}" + (f"?{query}" if query else "")


def panel_link(kind: str, **templates: str) -> str:
    """A relative link for a Grafana data link: variables as Grafana templates (left unencoded
    so Grafana fills them in, e.g. `team="${__data.fields.team}"`), keeping the time range."""
    found = board(kind)
    for name in templates:
        if name not in found.variables:
            raise ValueError(f"dashboard {kind!r} has no variable {name!r}")
    parts = [f"var-{name}={value}" for name, value in templates.items()]
    return f"{found.path}?" + "&".join([*parts, "${__url_time_range}"])
