"""Shared pieces of the collector's integration tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from prometheus_client import CollectorRegistry
from sqlalchemy.engine import make_url

from impactwatch.catalog.loader import load_catalog
from impactwatch.catalog.model import Catalog
from impactwatch.collector.http_app import collector_app
from impactwatch.collector.metrics.exporter import ImpactwatchCollector
from impactwatch.collector.service import CollectorService
from impactwatch.collector.settings import CollectorSettings
from impactwatch.devtools.airflow_home import REPO_ROOT, reader_db_url
from impactwatch.serving import Server
from tests.support.postgres import drop_database

EXAMPLE_CATALOG = REPO_ROOT / "examples" / "catalog.yaml"


def make_service(
    airflow_db: str, state_dir: Path, catalog: Catalog | None = None, **settings: object
) -> CollectorService:
    """A collector on Airflow's DB at `airflow_db`; the example catalog unless another is
    given; `settings` override CollectorSettings (e.g. `airflow_url`, the UI's)."""
    config = CollectorSettings(
        airflow_db=airflow_db,
        state_db=f"sqlite:///{state_dir / 'state.db'}",
        catalog=str(EXAMPLE_CATALOG),
        backfill_days=30,
        **settings,  # type: ignore[arg-type]
    )
    service = CollectorService(config, catalog or load_catalog(EXAMPLE_CATALOG))
    assert service.wait_ready(60), "the collector did not restore its state"
    assert service.learned.wait(60), "the collector did not learn its baselines"
    return service


class Samples:
    """The metric samples of a collector's state, read under its lock (a test's view; the
    collector serves them through `/metrics`)."""

    def __init__(self, service: CollectorService) -> None:
        self.service = service
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(ImpactwatchCollector(service.state, service.clock))

    def get_sample_value(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        with self.service.state.lock:
            return self.registry.get_sample_value(name, labels)


def registry(service: CollectorService) -> Samples:
    return Samples(service)


@contextmanager
def serving(
    service: CollectorService, token: str | None, *, port: int = 0, max_body: int = 1_048_576
) -> Iterator[str]:
    """`service`'s HTTP app on a real server (uvicorn) on a loopback port; yields its base URL."""
    app = collector_app(service, token, max_body, service.settings.request_timeout)
    server = Server(app, "127.0.0.1", port, service.settings.server_limits(), name="collector")
    server.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()


@contextmanager
def collector_with_intake(
    airflow_url: str,
    state_dir: Path,
    token: str,
    *,
    port: int = 0,
    catalog: Catalog | None = None,
) -> Iterator[tuple[CollectorService, str]]:
    """A real collector (SQLite state DB) polling `airflow_url`, its intake on a loopback port
    behind `token`; yields the service and its base URL."""
    service = make_service(airflow_url, state_dir, catalog=catalog)
    try:
        with serving(service, token, port=port) as base:
            yield service, base
    finally:
        service.close()


def catch_up(service: CollectorService) -> None:
    while True:
        result = service.poll_once()
        assert result is not None, "poll cycle failed"
        if result.caught_up:
            return


@contextmanager
def copy_of(pg_base_url: str, airflow_url: str) -> Iterator[str]:
    """A private copy (CREATE DATABASE ... TEMPLATE) of a populated Airflow DB to change."""
    source = make_url(airflow_url).database
    name = f"impactwatch_copy_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_base_url + "/postgres", autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (source,)
        )
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{source}"')
    try:
        yield reader_db_url(str(make_url(airflow_url).set(database=name)))
    finally:
        drop_database(pg_base_url, name)


def sql(url: str, statement: str, *params: object) -> list[tuple]:
    """Run SQL on an Airflow PostgreSQL DB as Airflow would (tests play the scheduler)."""
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(statement, params or None)
        return cur.fetchall() if cur.description else []
