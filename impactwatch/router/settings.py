"""Router settings: one typed model, each option with its default and environment variable.

`IMPACTWATCH_ROUTER_<NAME>` sets each option, except the shared names the design fixes:
`SLACK_BOT_TOKEN`, `SLACK_SIGNING_SECRET`, `SLACK_API_URL`, `IMPACTWATCH_WEBHOOK_TOKEN`
(and `IMPACTWATCH_WEBHOOK_TOKEN_FILE`). CLI flags override the environment. Secrets are
`SecretStr`: they never show up in a repr or a log line.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from impactwatch.catalog.model import Deadline
from impactwatch.serving import ServedSettings


class RouterSettings(BaseSettings, ServedSettings):
    model_config = SettingsConfigDict(
        env_prefix="IMPACTWATCH_ROUTER_", extra="ignore", populate_by_name=True
    )

    catalog: str | None = Field(
        None,
        description="Catalog YAML (also IMPACTWATCH_CATALOG); none = everything to the default",
        validation_alias=AliasChoices(
            "catalog", "IMPACTWATCH_ROUTER_CATALOG", "IMPACTWATCH_CATALOG"
        ),
    )
    state_db: str = Field(
        "sqlite:///impactwatch-router.db", description="Incidents, messages, timers (SQLAlchemy)"
    )
    migrate_on_start: bool = Field(
        True, description="Upgrade the state DB at start; off: refuse to start unless it is current"
    )
    listen: str = Field("127.0.0.1:9465", description="HOST:PORT of the webhook, Slack, /metrics")
    grafana_url: str | None = Field(None, description="Grafana base URL for dashboard buttons")
    grafana_dashboard: str = Field(
        "/d/impactwatch-data-products/data-products?var-team={team}&var-dataset={dataset}",
        description="Dashboard path; {team}, {dataset}, {dag_id} are filled in",
    )
    airflow_url: str | None = Field(None, description="Airflow UI base URL for pipeline buttons")
    runbooks_dir: str | None = Field(
        None,
        description="The runbooks `impactwatch rules --out DIR` wrote (DIR/runbooks), served at "
        "/runbooks/ so the alerts' runbook links open here (the rules' default base URL)",
    )
    jsonl_path: str = Field(
        "impactwatch-router-messages.jsonl",
        description="Without a Slack token, rendered messages are appended here (and printed)",
    )
    fallback_channel: str = Field(
        "#impactwatch", description="Channel of a default team the catalog does not list"
    )
    slack_bot_token: SecretStr | None = Field(
        None,
        description="Bot token (xoxb-…); none = console and JSON Lines instead of Slack",
        validation_alias=AliasChoices("slack_bot_token", "SLACK_BOT_TOKEN"),
    )
    slack_signing_secret: SecretStr | None = Field(
        None,
        description="Verifies /slack/interactions; none = buttons refused (401)",
        validation_alias=AliasChoices("slack_signing_secret", "SLACK_SIGNING_SECRET"),
    )
    slack_api_url: str = Field(
        "https://slack.com/api/",
        description="Slack Web API base URL (a local stand-in in tests)",
        validation_alias=AliasChoices("slack_api_url", "SLACK_API_URL"),
    )
    webhook_token: SecretStr | None = Field(
        None,
        description="Bearer token POST /alertmanager requires",
        validation_alias=AliasChoices("webhook_token", "IMPACTWATCH_WEBHOOK_TOKEN"),
    )
    webhook_token_file: str | None = Field(
        None,
        description="File holding the webhook token instead",
        validation_alias=AliasChoices("webhook_token_file", "IMPACTWATCH_WEBHOOK_TOKEN_FILE"),
    )
    max_body_bytes: int = Field(4 * 1_048_576, gt=0, description="Largest webhook body accepted")
    interactions_max_body_bytes: int = Field(65536, gt=0, description="Largest Slack body (413)")
    interactions_inflight_bytes: int = Field(
        1_048_576,
        gt=0,
        description="Slack bodies being received at once, in bytes (their signature can only be "
        "checked once read): more are refused (503), so unsigned senders cannot fill memory",
    )
    settle_seconds: float = Field(
        3.0,
        ge=0,
        description="A new incident waits this long before its first post, so an upstream alert "
        "of the same storm can absorb it",
    )
    delivery_workers: int = Field(4, ge=1, le=32, description="Threads delivering to Slack")
    channel_interval: float = Field(
        1.0, ge=0, description="Seconds between two messages to one channel (Slack: 1/s)"
    )
    slack_timeout: int = Field(10, gt=0, description="Seconds per Slack API call")
    slack_hold_seconds: float = Field(
        600.0,
        gt=0,
        description="Slack refuses the bot token (invalid_auth, token_revoked...): delivery "
        "pauses this long; a message it refuses for good (missing_scope...) waits this long",
    )
    lease_seconds: float = Field(
        10.0,
        gt=0,
        description="A replica's hold on a message it is delivering, renewed every third of it "
        "while the replica lives: after a crash another replica re-sends within this long",
    )
    tick_seconds: float = Field(1.0, gt=0, description="Escalation and digest timer period")
    snooze_seconds: float = Field(3600.0, gt=0, description="What the Snooze button gives")
    digest_at: str = Field(
        "09:00 UTC", description="Daily digest time for teams with `digest: true` (HH:MM zone)"
    )

    @field_validator("runbooks_dir")
    @classmethod
    def _runbooks_folder(cls, value: str | None) -> str | None:
        if value and not Path(value).is_dir():
            raise ValueError(
                f"{value!r} is not a folder: give the runbooks folder `impactwatch rules --out "
                "DIR` wrote (DIR/runbooks), or leave it unset"
            )
        return value

    @field_validator("digest_at")
    @classmethod
    def _digest_time(cls, value: str) -> str:
        Deadline.model_validate(value)
        return value

    @model_validator(mode="after")
    def _budget_fits_a_body(self) -> RouterSettings:
        if self.interactions_inflight_bytes < self.interactions_max_body_bytes:
            raise ValueError(
                "interactions_inflight_bytes must be at least interactions_max_body_bytes "
                f"({self.interactions_max_body_bytes}), or the largest Slack body never fits"
            )
        return self

    def digest_time(self) -> Deadline:
        return Deadline.model_validate(self.digest_at)

    def webhook_secret(self) -> str | None:
        """The webhook token from the environment or its file; never logged."""
        if self.webhook_token is not None:
            return self.webhook_token.get_secret_value() or None
        if self.webhook_token_file:
            with open(self.webhook_token_file, encoding="utf-8") as fh:
                return fh.read().strip() or None
        return None
