"""Make real DAG runs with ``DAG.test()`` in ONE Airflow process.

Run by Airflow's own Python, never imported by impactwatch (Airflow is imported inside
:func:`main` only, so importing this module stays cheap and Airflow-free)::

    .venv-airflow/bin/python impactwatch/devtools/dag_runner.py SPECS.json RESULTS.json

SPECS.json is a list of :class:`impactwatch.devtools.airflow_home.RunSpec` as JSON; RESULTS.json
receives ``[{"dag_id", "run_id", "state"}, ...]``, rewritten after every run.

``DAG.test()`` (what ``airflow dags test`` calls) runs tasks for real through the in-process
Execution API. Two of its steps are replaced here:

- with ``logical_date=None`` it would clear every task instance of the DAG and delete every
  earlier run of it with a NULL logical date; here it touches only the run it makes;
- it always makes ``manual`` runs started at their logical date; here a spec may ask for a
  ``scheduled`` or ``asset_triggered`` run, shaped as the scheduler makes them (run_id,
  triggered_by, queued_at, run_after, consumed asset events), started now.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any
from unittest import mock


def main(spec_path: str, result_path: str) -> None:
    with open(spec_path) as f:
        specs: list[dict[str, Any]] = json.load(f)

    from airflow.providers_manager import ProvidersManager

    ProvidersManager().initialize_providers_configuration()

    import httpx
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import BundleDagBag
    from airflow.models import dagrun as dagrun_module
    from airflow.models.asset import AssetDagRunQueue, AssetEvent, DagScheduleAssetReference
    from airflow.models.dagrun import DagRun
    from airflow.sdk import timezone
    from airflow.sdk.execution_time.supervisor import in_process_api_server
    from airflow.serialization.definitions.dag import SerializedDAG
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunTriggeredByType, DagRunType
    from sqlalchemy import delete, func, select

    # The in-process Execution API needs ~3 s for its first answer: pay that here, not inside
    # the first task's recorded duration.
    with httpx.Client(transport=in_process_api_server().transport) as client:
        client.get("http://in-process.invalid./health")

    manager = DagBundlesManager()
    manager.sync_bundles_to_db()
    dags = {}
    for bundle in manager.get_all_dag_bundles():
        bundle.initialize()
        bag = BundleDagBag(dag_folder=bundle.path, bundle_path=bundle.path, bundle_name=bundle.name)
        if bag.import_errors:
            raise SystemExit(f"DAG import errors in {bundle.path}: {bag.import_errors}")
        dags.update(bag.dags)

    current: dict[str, Any] = {}
    original_clear_dags = SerializedDAG.clear_dags

    def clear_dags(*, dags, start_date=None, end_date=None, **kwargs):
        if start_date is None:  # no logical date: Airflow would clear ALL of the DAG's TIs
            return 0
        return original_clear_dags(dags=dags, start_date=start_date, end_date=end_date, **kwargs)

    def consume_asset_events(dag_id: str, session) -> list:
        """What the scheduler does for an asset-triggered run: take the events since the
        previous such run and empty the DAG's asset queue."""
        previous = session.scalar(
            select(func.max(DagRun.run_after)).where(
                DagRun.dag_id == dag_id, DagRun.run_type == DagRunType.ASSET_TRIGGERED
            )
        )
        scheduled_on = select(DagScheduleAssetReference.asset_id).where(
            DagScheduleAssetReference.dag_id == dag_id
        )
        query = select(AssetEvent).where(AssetEvent.asset_id.in_(scheduled_on))
        if previous is not None:
            query = query.where(AssetEvent.timestamp > previous)
        events = list(session.scalars(query.order_by(AssetEvent.timestamp, AssetEvent.id)))
        session.execute(delete(AssetDagRunQueue).where(AssetDagRunQueue.target_dag_id == dag_id))
        return events

    def get_or_create_dagrun(
        *,
        dag,
        run_id,
        logical_date,
        data_interval,
        run_after,
        conf,
        triggered_by,
        triggering_user_name,
        start_date,
        session,
    ):
        run_type = DagRunType(current.get("run_type") or "manual")
        now = timezone.utcnow()
        queued_at = None
        events: list = []
        if logical_date is not None:  # as Airflow: running a logical date again replaces its run
            existing = session.scalar(
                select(DagRun).where(
                    DagRun.dag_id == dag.dag_id, DagRun.logical_date == logical_date
                )
            )
            if existing:
                session.delete(existing)
                session.commit()
        if run_type == DagRunType.SCHEDULED:
            if logical_date is None:
                raise SystemExit(f"a scheduled run of {dag.dag_id} needs a logical_date")
            run_after = data_interval.end if data_interval else logical_date
            triggered_by, triggering_user_name = DagRunTriggeredByType.TIMETABLE, None
            queued_at = now
        elif run_type == DagRunType.ASSET_TRIGGERED:
            if logical_date is not None:
                raise SystemExit(f"an asset-triggered run of {dag.dag_id} has no logical_date")
            triggered_by, triggering_user_name = DagRunTriggeredByType.ASSET, None
            queued_at = now
            events = consume_asset_events(dag.dag_id, session)
        elif run_type != DagRunType.MANUAL:
            raise SystemExit(
                f"run_type {run_type.value!r}: use manual, scheduled or asset_triggered"
            )
        if current.get("run_id"):
            run_id = current["run_id"]
        elif run_type != DagRunType.MANUAL:
            run_id = DagRun.generate_run_id(
                run_type=run_type, logical_date=logical_date, run_after=run_after
            )
        dr = dag.create_dagrun(
            run_id=run_id,
            logical_date=logical_date,
            data_interval=data_interval,
            run_after=run_after,
            conf=conf,
            run_type=run_type,
            state=DagRunState.RUNNING,
            triggered_by=triggered_by,
            triggering_user_name=triggering_user_name,
            start_date=now,
            session=session,
        )
        dr.queued_at = queued_at
        dr.consumed_asset_events.extend(events)
        session.commit()
        return dr

    results: list[dict[str, str]] = []
    _write(result_path, results)
    with (
        mock.patch.object(SerializedDAG, "clear_dags", clear_dags),
        mock.patch.object(dagrun_module, "get_or_create_dagrun", get_or_create_dagrun),
    ):
        for spec in specs:
            dag = dags.get(spec["dag_id"])
            if dag is None:
                raise SystemExit(f"DAG {spec['dag_id']!r} not found; DAGs: {sorted(dags)}")
            current.clear()
            current.update(spec)
            logical_date = spec.get("logical_date")
            if logical_date is not None:
                logical_date = timezone.coerce_datetime(datetime.fromisoformat(logical_date))
            dr = dag.test(logical_date=logical_date, run_conf=spec.get("conf") or None)
            state = DagRunState(dr.state).value
            results.append({"dag_id": dr.dag_id, "run_id": dr.run_id, "state": state})
            _write(result_path, results)


def _write(path: str, results: list[dict[str, str]]) -> None:
    with open(path, "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main(*sys.argv[1:])
