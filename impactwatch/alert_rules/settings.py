"""Rule-generation settings: every threshold, interval, URL and path in one typed model.

The rules, the Alertmanager config, the Prometheus config and the runbooks are all stamped from
this one model, so a threshold is written once. The platform limits the dashboards draw too are
the contract's (`impactwatch.contract.thresholds`): their fields here are the contract's fields,
read with human durations. Each field documents its default and why. The CLI overrides fields
with `--set NAME=VALUE` (and a few named flags); the environment does NOT: generated files are
checked in and CI regenerates them, so the output must depend on the catalog and the command
line only.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from impactwatch.catalog.durations import parse_duration
from impactwatch.contract.thresholds import PlatformThresholds

Seconds = Annotated[float, BeforeValidator(parse_duration)]
"""Seconds; written as "30s", "1m", "1h30m" or a number of seconds."""

DEFAULT_ROUTER_URL = "http://127.0.0.1:9465/alertmanager"
# The router serves the generated runbooks (IMPACTWATCH_ROUTER_RUNBOOKS_DIR) at /runbooks on its
# default listen address: the links open where impactwatch runs. Set it to where yours are.
DEFAULT_RUNBOOK_BASE_URL = "http://127.0.0.1:9465/runbooks"


def _platform(name: str) -> Any:
    """The contract's field for platform threshold `name`: its default, bounds and meaning."""
    return PlatformThresholds.model_fields[name]


class RuleSettings(BaseModel):
    """What `impactwatch rules` generates with; the defaults are what ships."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # -- where things are -----------------------------------------------------------------------
    runbook_base_url: str = Field(
        DEFAULT_RUNBOOK_BASE_URL,
        description="Where DIR/runbooks is published; every alert's runbook_url starts with it",
    )
    router_url: str = Field(
        DEFAULT_ROUTER_URL, description="The impactwatch router's Alertmanager webhook URL"
    )
    router_token_file: str = Field(
        "/etc/alertmanager/impactwatch-webhook-token",
        description="File with the bearer token Alertmanager sends to the router "
        "(the router's IMPACTWATCH_WEBHOOK_TOKEN); never written into the config itself",
    )
    collector_job: str = Field(
        "impactwatch-collector", description="Prometheus job scraping the collector(s)"
    )
    collector_targets: list[str] = Field(
        ["127.0.0.1:9464"], description="HOST:PORT of each collector (prometheus.yml)"
    )
    out_of_band_email: str = Field(
        "root@localhost",
        description="Who is emailed the alerts about the router's own delivery (Slack "
        "refusing it, messages stuck), a path that does not depend on Slack; empty: no email",
    )
    out_of_band_webhook_url: str | None = Field(
        None,
        description="Also POST those alerts (Alertmanager's webhook format) here: a pager "
        "gateway, an Opsgenie or PagerDuty webhook integration",
    )
    smtp_smarthost: str = Field(
        "localhost:25", description="SMTP server HOST:PORT for the out-of-band email"
    )
    smtp_from: str = Field(
        "alertmanager@localhost", description="Sender address of the out-of-band email"
    )
    smtp_require_tls: bool = Field(
        False, description="STARTTLS to smtp_smarthost (off: a local MTA on port 25)"
    )
    router_job: str = Field("impactwatch-router", description="Prometheus job scraping the router")
    router_targets: list[str] = Field(
        ["127.0.0.1:9465"], description="HOST:PORT of each router (prometheus.yml)"
    )
    alertmanager_targets: list[str] = Field(
        ["127.0.0.1:9093"], description="HOST:PORT of each Alertmanager (prometheus.yml)"
    )
    cost_reconcile_job: str = Field(
        "impactwatch-cost", description="Prometheus job scraping `impactwatch cost reconcile`"
    )
    cost_reconcile_targets: list[str] = Field(
        [],
        description="HOST:PORT of `impactwatch cost reconcile` (prometheus.yml; none: no job)",
    )
    pool_advice_job: str = Field(
        "impactwatch-pools",
        description="Prometheus job scraping `impactwatch pools advise --listen`",
    )
    pool_advice_targets: list[str] = Field(
        [],
        description="HOST:PORT of `impactwatch pools advise --listen` (prometheus.yml; none: none)",
    )
    platform_team: str | None = Field(
        None, description="Team owning the platform alerts; default: the catalog's defaults.team"
    )

    # -- the path from a breach to the router (see bench/bench_alert_latency.py) ---------------
    scrape_interval: Seconds = Field(
        15.0, gt=0, description="How often Prometheus scrapes the collector (prometheus.yml)"
    )
    evaluation_interval: Seconds = Field(
        15.0, gt=0, description="How often every rule group is evaluated (set on each group)"
    )
    freshness_for: Seconds = Field(
        30.0,
        ge=0,
        description="A data product must stay stale this long before anyone is told: drops "
        "near-misses of a product refreshed seconds late, keeps the alert under a minute",
    )
    predicted_margin: Seconds = Field(
        600.0,
        ge=0,
        description="A data product's expected update must pass its limit by this much before "
        "a predicted miss (DataProductLikelyLate) warns: a run a few minutes behind is noise",
    )
    pipeline_for: Seconds = Field(
        60.0,
        ge=0,
        description="for: of the duration, deadline and failure alerts (a run cleared and "
        "re-run within a minute never pages)",
    )
    group_wait: Seconds = Field(
        10.0,
        ge=0,
        description="Alertmanager waits this long after an incident's first alert so that "
        "alerts firing together arrive in one notification",
    )
    group_interval: Seconds = Field(
        60.0,
        gt=0,
        description="An incident already notified is re-sent at most this often when it "
        "changes (escalation, resolution): the router's update latency",
    )
    repeat_interval: Seconds = Field(
        3600.0,
        gt=0,
        description="An unchanged incident is re-sent this often; the router dedupes it, so "
        "this only heals a notification the router missed",
    )
    series_gap_tolerance: Seconds = Field(
        600.0,
        gt=0,
        description="Timestamps and thresholds are read with last_over_time over this window, "
        "so a collector restart (a few failed scrapes) neither resolves nor re-fires alerts",
    )

    # -- platform thresholds ----------------------------------------------------------------------
    scheduler_heartbeat_stale: Seconds = _platform("scheduler_heartbeat_stale")
    scheduler_lag: Seconds = _platform("scheduler_lag")
    scheduler_lag_quantile: float = _platform("scheduler_lag_quantile")
    scheduler_lag_window: Seconds = Field(
        1800.0, gt=0, description="Window of run starts the lag quantile is taken over"
    )
    pool_starving_for: Seconds = Field(
        600.0, ge=0, description="Tasks waiting on a pool with no open slot this long"
    )
    xcom_bloat_bytes: float = _platform("xcom_bloat_bytes")
    import_errors_for: Seconds = Field(
        120.0, ge=0, description="DAG files failing to parse this long (saves mid-edit pass)"
    )
    collector_down_for: Seconds = Field(
        60.0, ge=0, description="Failed scrapes of the collector this long: it is down"
    )
    collector_stale_after: Seconds = _platform("collector_stale_after")
    router_failure_ratio: float = Field(
        0.1, gt=0, le=1, description="Share of failed Slack calls over the window that alerts"
    )
    router_failure_window: Seconds = Field(
        600.0, gt=0, description="Window the Slack failure share is taken over"
    )
    router_outbox_age: Seconds = Field(
        600.0,
        gt=0,
        description="A Slack message undelivered this long alerts (critical at twice): Slack "
        "refuses the router, or messages are stuck; sent out of band too",
    )
    cost_anomaly_factor: float = Field(
        3.0,
        gt=1,
        description="A run costing over this many times the median of its previous 20 runs "
        "alerts its owners",
    )
    cost_anomaly_min: float = Field(
        1.0,
        ge=0,
        description="A costly run alerts only if it cost at least this much (catalog "
        "currency): runs of a few cents never page",
    )
    cost_model_off_factor: float = Field(
        2.0,
        gt=1,
        description="The AWS bill and the estimate of a DAG this many times apart: the cost "
        "model is off (either way)",
    )
    platform_for: Seconds = Field(
        60.0, ge=0, description="for: of the scheduler-down and XCom alerts"
    )
    noisy_for: Seconds = Field(
        300.0, ge=0, description="for: of the statistical alerts (scheduler lag, router failures)"
    )
    noisy_keep_firing_for: Seconds = Field(
        600.0,
        ge=0,
        description="Hysteresis: lag, pool and router alerts keep firing this long after "
        "their condition clears, so a value hovering at its limit is one incident, not ten",
    )

    @model_validator(mode="after")
    def _someone_outside_slack(self) -> RuleSettings:
        if not self.out_of_band_email and not self.out_of_band_webhook_url:
            raise ValueError(
                "set out_of_band_email or out_of_band_webhook_url: alerts about the router's "
                "own delivery must reach someone by a path that does not depend on Slack"
            )
        return self


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, float) and value == int(value):
        return str(int(value))
    return str(value)


def setting_rows(settings: RuleSettings | None = None) -> list[tuple[str, str, str, str]]:
    """(name, value in `settings`, default, description) of every setting; durations in
    seconds. For `--list-settings` and the runbooks README."""
    current = settings or RuleSettings()
    return [
        (name, _text(getattr(current, name)), _text(field.default), field.description or "")
        for name, field in RuleSettings.model_fields.items()
    ]


class SettingsError(ValueError):
    """A `--set` that does not parse or validate; the message names the setting and the fix."""


def settings_from_pairs(pairs: Iterable[str], **named: object) -> RuleSettings:
    """Settings from `NAME=VALUE` strings (lists comma-separated) plus named overrides."""
    values: dict[str, object] = {k: v for k, v in named.items() if v is not None}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not name:
            raise SettingsError(f"--set {pair!r}: write NAME=VALUE, e.g. --set freshness_for=1m")
        field = RuleSettings.model_fields.get(name)
        if field is None:
            raise SettingsError(
                f"--set {pair!r}: no setting {name!r}; `impactwatch rules --list-settings` "
                "lists them"
            )
        listed = isinstance(field.default, list)
        values[name] = [v.strip() for v in value.split(",") if v.strip()] if listed else value
    try:
        return RuleSettings(**values)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise SettingsError(problems) from None
