"""The Airflow plugin (entry point `airflow.plugins`): registers the listener when configured.

With no `IMPACTWATCH_COLLECTOR_URL` it registers nothing, so Airflow runs as if it were not
installed.
"""

from __future__ import annotations

try:
    from airflow.plugins_manager import AirflowPlugin
except ImportError:  # a worker with the Task SDK only
    from airflow.sdk.plugins_manager import AirflowPlugin  # type: ignore[no-redef]

from impactwatch.airflow_listeners.listener import make_listeners


class ImpactwatchPlugin(AirflowPlugin):
    name = "impactwatch"
    listeners = make_listeners()
