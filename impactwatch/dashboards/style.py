"""House style of every generated dashboard: units, colours, status words, panel sizes.

One place, so the three dashboards look like one product. Grafana's JSON model pieces that
grafanalib 0.7 spells in an older form (threshold steps, value mappings, field overrides, cell
options) are written here as the plain dicts Grafana 10 and 11 read.
"""

from __future__ import annotations

from typing import Any

# -- where the data comes from ---------------------------------------------------------------------
DATASOURCE_UID = "impactwatch-prometheus"
DATASOURCE_NAME = "impactwatch Prometheus"
DATASOURCE = {"type": "prometheus", "uid": DATASOURCE_UID}
IMPORT_INPUT = "DS_IMPACTWATCH_PROMETHEUS"
"""The `__inputs` name of the importable copies: Grafana's import form asks for a data source."""

# -- the JSON model -------------------------------------------------------------------------------
SCHEMA_VERSION = 39
"""Grafana 10.4 to 11.2 write 39. Grafana 10.0-10.3 (38) read it unchanged: the 38->39 step only
rewrites `timeSeriesTable` transformation options, which these dashboards do not use. Grafana
11.3+ migrate 39->40->41 by making `refresh` a string (it is one) and dropping
`timepicker.time_options` (empty here): nothing they change is used."""
TAGS = ["impactwatch"]
REFRESH = "1m"
DEFAULT_RANGE = ("now-7d", "now")
REFRESH_INTERVALS = ["30s", "1m", "5m", "15m", "1h"]
MIN_INTERVAL = "1m"
"""Smallest step of range queries and subqueries: the collector changes values once a poll."""

# -- units (Grafana unit ids) --------------------------------------------------------------------
SECONDS = "s"
BYTES = "bytes"
SHARE = "percentunit"
COUNT = "short"
PER_SECOND = "ops"
FROM_NOW = "dateTimeFromNow"  # epoch milliseconds shown as "3 hours ago" / "in 5 hours"
_CURRENCIES = {
    "USD": "currencyUSD",
    "EUR": "currencyEUR",
    "GBP": "currencyGBP",
    "JPY": "currencyJPY",
    "CHF": "currencyCHF",
    "CAD": "currencyCAD",
    "AUD": "currencyAUD",
    "SEK": "currencySEK",
    "NOK": "currencyNOK",
    "DKK": "currencyDKK",
    "PLN": "currencyPLN",
    "CZK": "currencyCZK",
    "INR": "currencyINR",
    "BRL": "currencyBRL",
    "ZAR": "currencyZAR",
}


def currency_unit(code: str) -> str:
    """Grafana's unit for the catalog's currency; a suffix for currencies it has no unit for."""
    return _CURRENCIES.get(code.upper(), f"suffix: {code}")


# -- colours ---------------------------------------------------------------------------------------
GREEN = "green"
AMBER = "orange"
RED = "red"
BLUE = "blue"
GREY = "#8e8e8e"


def steps(base: str, *levels: tuple[float, str]) -> dict[str, Any]:
    """Absolute threshold steps: `base` colour from -inf, then each (value, colour)."""
    return {
        "mode": "absolute",
        "steps": [{"color": base, "value": None}]
        + [{"color": colour, "value": value} for value, colour in levels],
    }


def limit_steps(limit: float, warn_share: float = 0.5) -> dict[str, Any]:
    """Green, amber from `warn_share` of the limit, red at the limit."""
    return steps(GREEN, (limit * warn_share, AMBER), (limit, RED))


SHARE_OF_LIMIT = steps(GREEN, (1.0, AMBER), (2.0, RED))
"""For a value divided by its limit: past 1 is a breach, past 2 is critical (severity ladder)."""
COMPLIANCE = steps(RED, (0.9, AMBER), (0.99, GREEN))
"""For shares of time or runs within their SLA."""
ANY_IS_BAD = steps(GREEN, (1.0, RED))

# -- status words --------------------------------------------------------------------------------
# A data product's status code (see promql.product_status) and how it reads at a glance.
STATUS_NO_UPDATE, STATUS_FRESH, STATUS_LATE, STATUS_STALE, STATUS_PAUSED, STATUS_NO_LIMIT = (
    -1,
    0,
    1,
    2,
    3,
    4,
)
PRODUCT_STATUS = {
    STATUS_NO_UPDATE: ("No update yet", GREY),
    STATUS_FRESH: ("Fresh", GREEN),
    STATUS_LATE: ("Late", AMBER),
    STATUS_STALE: ("Stale", RED),
    STATUS_PAUSED: ("Paused", BLUE),
    STATUS_NO_LIMIT: ("No limit set", GREY),
}


def value_mappings(words: dict[int, tuple[str, str]]) -> list[dict[str, Any]]:
    """Grafana value mappings: each number shown as a word in a colour."""
    return [
        {
            "type": "value",
            "options": {
                str(value): {"text": text, "color": colour, "index": index}
                for index, (value, (text, colour)) in enumerate(sorted(words.items()))
            },
        }
    ]


# -- field overrides ------------------------------------------------------------------------------
def override(field: str, **properties: Any) -> dict[str, Any]:
    """A field override by name; property ids with dots are written with `__` (custom__width)."""
    return {
        "matcher": {"id": "byName", "options": field},
        "properties": [
            {"id": key.replace("__", "."), "value": value} for key, value in properties.items()
        ],
    }


def cell(kind: str) -> dict[str, Any]:
    """Table cell options: "color-background", "color-text", "gauge" or "auto"."""
    if kind == "gauge":
        return {"type": "gauge", "mode": "basic"}
    if kind == "color-background":
        return {"type": "color-background", "mode": "basic"}
    return {"type": kind}


def link(title: str, url: str) -> dict[str, Any]:
    return {"title": title, "url": url, "targetBlank": False}


# -- sizes (Grafana's grid: 24 columns; a unit of height is 30 px) ---------------------------------
WIDTH = 24
ROW_H = 1
STAT_H = 4
TILES_H = 6
CHART_H = 8
TABLE_H = 10
FULL, HALF, THIRD, QUARTER = 24, 12, 8, 6
