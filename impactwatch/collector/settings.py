"""Collector settings: one typed model, each option with its default and environment variable."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from impactwatch.serving import ServedSettings


class CollectorSettings(BaseSettings, ServedSettings):
    """`IMPACTWATCH_<NAME>` sets each option; CLI flags override the environment."""

    model_config = SettingsConfigDict(env_prefix="IMPACTWATCH_", extra="ignore")

    catalog: str | None = Field(None, description="Catalog YAML; none = Airflow declarations only")
    airflow_db: str = Field(..., description="SQLAlchemy URL of Airflow's metadata DB (read-only)")
    state_db: str = Field("sqlite:///impactwatch-state.db", description="The collector's own DB")
    migrate_on_start: bool = Field(
        True, description="Upgrade the state DB at start; off: refuse to start unless it is current"
    )
    listen: str = Field(
        "127.0.0.1:9464", description="HOST:PORT for /metrics, /healthz, /v1/events"
    )
    poll_interval: float = Field(10.0, gt=0, description="Seconds between poll cycles")
    declarations_interval: float = Field(
        60.0, gt=0, description="Seconds between reads of DAGs, tags and assets for the catalog"
    )
    backfill_days: float = Field(7.0, ge=0, description="History read on first start")
    statement_timeout_ms: int = Field(5000, gt=0, description="Per-statement limit on Airflow's DB")
    cycle_timeout: float = Field(
        60.0, gt=0, description="A poll cycle that takes longer is abandoned and counted failed"
    )
    airflow_dead_after: float = Field(
        10.0,
        ge=2,
        description="Seconds a PostgreSQL connection to Airflow's DB may go silent (no TCP "
        "acknowledgement, no keepalive answer) before it fails; a cycle still running after "
        "poll_interval marks the collector stale meanwhile",
    )
    token: SecretStr | None = Field(
        None, description="Bearer token /v1/events requires (IMPACTWATCH_TOKEN); none = open"
    )
    token_file: str | None = Field(None, description="File holding the token instead")
    max_body_bytes: int = Field(1_048_576, gt=0, description="Largest /v1/events body accepted")
    intake_queue: int = Field(
        1000, gt=0, description="/v1/events requests waiting for the state DB; more get a 503"
    )
    state_timeout_ms: int = Field(
        30_000,
        gt=0,
        description="Per-statement and lock-wait limit on a PostgreSQL state DB: a hung write "
        "fails (503) instead of holding the writer",
    )
    trace_max_age: float = Field(
        3600.0,
        ge=0,
        description="Traces (on when OTEL_EXPORTER_OTLP_ENDPOINT is set): runs that ended longer"
        " ago than this many seconds (history, an outage) get none",
    )
    airflow_url: str | None = Field(
        None, description="Airflow UI base URL, for links from traces to runs and task tries"
    )

    def intake_token(self) -> str | None:
        """The token from the environment or its file; never logged."""
        if self.token is not None:
            return self.token.get_secret_value()
        if self.token_file:
            with open(self.token_file, encoding="utf-8") as fh:
                return fh.read().strip() or None
        return None
