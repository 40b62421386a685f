"""Limits of the platform alerts that the Platform dashboard draws too: one number, two readers.

`alert_rules/` fires the platform alerts at these (its `RuleSettings` takes each field from here,
default, bounds and meaning, and adds human durations for `impactwatch rules --set`); the
Platform dashboard of `dashboards/` turns its panels red at the same values. Plain numbers:
seconds, bytes, a quantile.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class PlatformThresholds(BaseModel):
    """The shipped limits; durations in seconds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scheduler_heartbeat_stale: float = Field(
        120.0, gt=0, description="No scheduler heartbeat for this long: the scheduler is down"
    )
    scheduler_lag: float = Field(
        60.0, gt=0, description="Runs starting this long after they are due (quantile below)"
    )
    scheduler_lag_quantile: float = Field(0.95, gt=0, lt=1, description="Quantile of the lag")
    xcom_bloat_bytes: float = Field(
        1_048_576.0, gt=0, description="Largest XCom a DAG may write before it bloats Airflow's DB"
    )
    collector_stale_after: float = Field(
        120.0, gt=0, description="The collector's last good read of Airflow's DB is this old"
    )
