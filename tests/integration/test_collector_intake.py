"""The collector's intake on a real server (uvicorn, impactwatch/serving.py) with real state DBs
(SQLite, PostgreSQL), spoken to on raw sockets: early answers, slow and vanishing clients,
concurrent clients, the one writer's groups, a failing, hanging or busy state DB, scrapes during
writes, shutdown."""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from impactwatch.catalog.loader import load_catalog
from impactwatch.collector import http_app
from impactwatch.collector import service as service_module
from impactwatch.collector.events import AssetUpdate, Batch
from impactwatch.collector.intake.parse import SCHEMA
from impactwatch.collector.service import CollectorService
from impactwatch.collector.settings import CollectorSettings
from impactwatch.collector.state.schema import asset_update_t
from impactwatch.devtools.airflow_home import reader_db_url
from tests.integration.helpers import EXAMPLE_CATALOG, registry, serving
from tests.support.postgres import create_database, drop_database

pytestmark = pytest.mark.integration

TOKEN = "intake-server-token"
MAX_BODY = 512 * 1024
EVENTS = "impactwatch_collector_events_total"
NEW = {"source": "listener", "outcome": "new"}


# --- a collector, SQLite or PostgreSQL state DB ---------------------------------------------------
def build_service(tmp_path: Path, state_db: str, **settings: Any) -> CollectorService:
    config = CollectorSettings(
        airflow_db=f"sqlite:///{tmp_path / 'airflow-never-read.db'}",
        state_db=state_db,
        catalog=str(EXAMPLE_CATALOG),
        **settings,
    )
    service = CollectorService(config, load_catalog(EXAMPLE_CATALOG))
    assert service.wait_ready(60), "the collector did not restore its state"
    return service


@pytest.fixture
def settings() -> dict[str, Any]:
    """CollectorSettings a test changes (before asking for a service)."""
    return {}


@pytest.fixture
def sqlite_service(tmp_path: Path, settings: dict[str, Any]) -> Iterator[CollectorService]:
    service = build_service(tmp_path, f"sqlite:///{tmp_path / 'state.db'}", **settings)
    try:
        yield service
    finally:
        service.close()


@pytest.fixture
def postgresql_url(pg_base_url: str) -> Iterator[str]:
    name = f"impactwatch_intake_{uuid.uuid4().hex[:8]}"
    url = create_database(pg_base_url, name)
    try:
        yield reader_db_url(url)
    finally:
        drop_database(pg_base_url, name)


@pytest.fixture
def postgresql_service(
    postgresql_url: str, tmp_path: Path, settings: dict[str, Any]
) -> Iterator[CollectorService]:
    service = build_service(tmp_path, postgresql_url, **settings)
    try:
        yield service
    finally:
        service.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_service(request: pytest.FixtureRequest) -> CollectorService:
    service: CollectorService = request.getfixturevalue(f"{request.param}_service")
    return service


@pytest.fixture
def port(sqlite_service: CollectorService) -> Iterator[int]:
    with serving(sqlite_service, TOKEN, max_body=MAX_BODY) as base:
        yield port_of(base)


def port_of(base: str) -> int:
    return int(base.rsplit(":", 1)[1])


# --- a client on raw sockets ----------------------------------------------------------------------
@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def parse(raw: bytes) -> Reply:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith("HTTP/1.1 "), raw[:200]
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return Reply(int(lines[0].split(" ")[1]), {k.lower(): v for k, v in headers.items()}, body)


def connect(port: int, timeout: float = 10) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_all(sock: socket.socket) -> bytes:
    """Everything up to the server's end of the connection (asked for: `Connection: close`)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def head(method: str, path: str, length: int | None = None, token: str | None = TOKEN) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: collector", "Connection: close"]
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    if length is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {length}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def post(port: int, body: bytes, token: str | None = TOKEN) -> Reply:
    with connect(port, timeout=30) as sock:
        sock.sendall(head("POST", "/v1/events", len(body), token) + body)
        return parse(read_all(sock))


def get(port: int, path: str) -> Reply:
    with connect(port) as sock:
        sock.sendall(head("GET", path, token=None))
        return parse(read_all(sock))


def events(*uris: str) -> bytes:
    items = [{"type": "asset", "uri": uri, "timestamp": 1795500000} for uri in uris]
    return json.dumps({"schema": SCHEMA, "events": items}).encode()


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server ended the connection (EOF or reset) within the socket's timeout,
    after whatever it answered."""
    try:
        while sock.recv(65536):
            pass
        return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def wait_for(condition: Callable[[], object], what: str, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def stored_assets(service: CollectorService) -> int:
    with service.store.engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(asset_update_t)) or 0


def refused(service: CollectorService, reason: str) -> float:
    """Intake requests refused (or failed) for `reason` (contract.metrics.INTAKE_REFUSALS)."""
    return counted(service, {"source": "listener", "outcome": reason})


def counted(service: CollectorService, labels: dict[str, str]) -> float:
    return registry(service).get_sample_value(EVENTS, labels) or 0.0


def state_errors(service: CollectorService) -> float:
    labels = {"db": "state"}
    return registry(service).get_sample_value("impactwatch_collector_db_errors_total", labels) or 0


class Gate:
    """Holds the writer inside `Store.write` until opened (a slow state DB), recording the
    size of each group it is handed."""

    def __init__(self, service: CollectorService, monkeypatch: pytest.MonkeyPatch) -> None:
        self.entered = threading.Event()
        self.opened = threading.Event()
        self.groups: list[list[int]] = []
        write = service.store.write

        def gated(writes: list, stage: object = None) -> list:
            self.groups.append([len(batch) for batch, _ in writes])
            self.entered.set()
            assert self.opened.wait(30)
            return write(writes, stage)  # type: ignore[arg-type]

        monkeypatch.setattr(service.store, "write", gated)

    def open(self) -> None:
        self.opened.set()


# --- early answers --------------------------------------------------------------------------------
def test_refusals_are_answered_from_the_head_before_the_body_is_sent(
    sqlite_service: CollectorService, port: int
) -> None:
    """401 (wrong token, no token), 411 and 413 come back while the client has sent only the
    head of a large request: no body byte is needed, none is read."""
    reasons = ("unauthorized", "too_large", "invalid")
    before = {reason: refused(sqlite_service, reason) for reason in reasons}
    no_length = b"POST /v1/events HTTP/1.1\r\nHost: c\r\nConnection: close\r\n"
    no_length += b"Authorization: Bearer " + TOKEN.encode()
    cases = [
        (head("POST", "/v1/events", 900 * 1024, "wrong"), 401),
        (head("POST", "/v1/events", 900 * 1024, None), 401),
        (head("POST", "/v1/events", MAX_BODY + 1), 413),
        (no_length + b"\r\nTransfer-Encoding: chunked\r\n\r\n", 411),
    ]
    for request, status in cases:
        with connect(port, timeout=5) as sock:
            sock.sendall(request)  # and not one byte of the body
            reply = parse(read_all(sock))
        assert reply.status == status, reply
        assert "error" in reply.json()
        if status == 401:
            assert reply.headers["www-authenticate"].startswith("Bearer")
        if status == 413:
            assert str(MAX_BODY) in reply.json()["error"]
    after = {reason: refused(sqlite_service, reason) - before[reason] for reason in reasons}
    assert after == {"unauthorized": 2, "too_large": 1, "invalid": 1}  # 411 counts as invalid
    assert stored_assets(sqlite_service) == 0
    assert post(port, events("s3://x/after")).status == 202


def test_bad_events_are_a_400_naming_the_field(sqlite_service: CollectorService, port: int) -> None:
    bad = json.dumps({"schema": SCHEMA, "events": [{"type": "asset", "uri": "s3://x"}]}).encode()
    reply = post(port, bad)
    assert reply.status == 400 and reply.json()["error"].startswith("events[0].timestamp")
    assert post(port, b"{oops").json()["error"].startswith("body: not JSON")
    assert refused(sqlite_service, "invalid") == 2
    assert stored_assets(sqlite_service) == 0


# --- bodies ---------------------------------------------------------------------------------------
def test_a_large_body_is_parsed_off_the_event_loop_and_stored(
    sqlite_service: CollectorService, port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed_on: list[str] = []
    parse_events = http_app.parse_events

    def recording(body: bytes) -> Batch:
        parsed_on.append(threading.current_thread().name)
        return parse_events(body)

    monkeypatch.setattr(http_app, "parse_events", recording)
    large = events(*(f"s3://lake/large/{i:05d}" for i in range(2000)))
    assert len(large) > http_app.PARSE_INLINE
    reply = post(port, large)
    assert reply.status == 202 and reply.json() == {"accepted": 2000, "outcomes": {"new": 2000}}
    assert post(port, events("s3://lake/small")).status == 202
    worker, loop = parsed_on
    assert worker != loop  # the small one on the loop's thread, the large one elsewhere
    assert stored_assets(sqlite_service) == 2001


def test_a_request_sent_in_small_pieces_with_pauses_is_stored(
    sqlite_service: CollectorService, port: int
) -> None:
    body = events(*(f"s3://lake/piece/{i}" for i in range(20)))
    data = head("POST", "/v1/events", len(body)) + body
    with connect(port) as sock:
        for start in range(0, len(data), 40):
            sock.sendall(data[start : start + 40])
            time.sleep(0.005)
        reply = parse(read_all(sock))
    assert reply.status == 202 and reply.json()["outcomes"] == {"new": 20}
    assert stored_assets(sqlite_service) == 20


# --- slow and vanishing clients -------------------------------------------------------------------
@pytest.mark.parametrize("settings", [{"request_timeout": 1.0, "header_timeout": 1.0}])
def test_a_request_not_sent_in_time_is_cut_while_others_are_served(
    sqlite_service: CollectorService, port: int
) -> None:
    body = events("s3://lake/slow")
    half_body = connect(port)
    half_body.sendall(head("POST", "/v1/events", len(body)) + body[:10])
    half_head = connect(port)
    half_head.sendall(b"POST /v1/events HTTP/1.1\r\nHost: coll")
    started = time.monotonic()
    assert get(port, "/healthz").status == 200  # others are served meanwhile
    assert post(port, events("s3://lake/meanwhile")).status == 202
    for sock in (half_body, half_head):
        with sock:
            assert closed_by_server(sock)
    assert 0.8 <= time.monotonic() - started < 5
    assert stored_assets(sqlite_service) == 1
    wait_for(lambda: refused(sqlite_service, "disconnected") == 1, "the cut body to count")


def test_clients_that_go_away_mid_request_do_not_break_the_server(
    sqlite_service: CollectorService, port: int
) -> None:
    body = events("s3://lake/vanished")
    request = head("POST", "/v1/events", len(body)) + body
    for cut in (len(request) - len(body) // 2, 20):  # mid-body, mid-head
        with connect(port) as sock:
            sock.sendall(request[:cut])
    with connect(port) as sock:  # reset mid-body
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.sendall(request[: len(request) - 10])
    reply = post(port, events("s3://lake/next"))
    assert reply.status == 202 and reply.json()["outcomes"] == {"new": 1}
    assert get(port, "/healthz").status == 200
    assert stored_assets(sqlite_service) == 1


# --- the writer -----------------------------------------------------------------------------------
def test_64_concurrent_clients_are_all_accepted_and_each_event_stored_once(
    any_service: CollectorService, monkeypatch: pytest.MonkeyPatch
) -> None:
    clients, per_client = 64, 3
    groups: list[int] = []
    write = any_service.store.write

    def recording(writes: list, *args: Any) -> list:
        groups.append(len(writes))
        return write(writes, *args)

    monkeypatch.setattr(any_service.store, "write", recording)
    replies: dict[int, Reply | BaseException] = {}
    with serving(any_service, TOKEN, max_body=MAX_BODY) as base:
        start = threading.Barrier(clients, timeout=30)

        def client(n: int) -> None:
            try:
                start.wait()
                replies[n] = post(port_of(base), events(*(f"s3://c/{n}/{i}" for i in range(3))))
            except BaseException as exc:  # reported below
                replies[n] = exc

        threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        got = [r for r in replies.values() if isinstance(r, Reply)]
        assert len(got) == clients, replies
        assert [r.status for r in got] == [202] * clients
        expected = {"accepted": per_client, "outcomes": {"new": per_client}}
        assert all(r.json() == expected for r in got)
        again = post(port_of(base), events(*(f"s3://c/7/{i}" for i in range(3))))
        assert again.json()["outcomes"] == {"duplicate": per_client}
    assert stored_assets(any_service) == clients * per_client
    assert counted(any_service, NEW) == clients * per_client
    assert sum(groups) == clients + 1 and len(groups) <= clients + 1


def test_what_waits_during_a_write_is_written_next_as_groups_of_bounded_size(
    sqlite_service: CollectorService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service_module, "GROUP_EVENTS", 3)
    gate = Gate(sqlite_service, monkeypatch)
    first = sqlite_service.submit(Batch(assets=[AssetUpdate(uri="s3://g/0", timestamp=1.0)]))
    assert gate.entered.wait(10)  # the writer holds the first one
    sizes = [1, 2, 1, 4, 2, 1]
    futures = [
        sqlite_service.submit(
            Batch(assets=[AssetUpdate(uri=f"s3://g/{n}/{i}", timestamp=1.0) for i in range(k)])
        )
        for n, k in enumerate(sizes)
    ]
    gate.open()
    outcomes = [f.result(10).outcomes for f in [first, *futures]]
    assert outcomes == [{"new": k} for k in [1, *sizes]]
    # taken while under 3 events, a batch at a time: the one that passes 3 closes the group
    assert gate.groups == [[1], [1, 2], [1, 4], [2, 1]]
    assert stored_assets(sqlite_service) == 12


def test_a_batch_its_sender_gave_up_on_before_the_writer_took_it_is_not_written(
    sqlite_service: CollectorService, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = Gate(sqlite_service, monkeypatch)
    first = sqlite_service.submit(Batch(assets=[AssetUpdate(uri="s3://k/first", timestamp=1.0)]))
    assert gate.entered.wait(10)
    dropped = sqlite_service.submit(
        Batch(assets=[AssetUpdate(uri="s3://k/dropped", timestamp=1.0)])
    )
    kept = sqlite_service.submit(Batch(assets=[AssetUpdate(uri="s3://k/kept", timestamp=1.0)]))
    assert dropped.cancel()  # queued: the sender's wait timed out
    gate.open()
    assert first.result(10).outcomes == kept.result(10).outcomes == {"new": 1}
    assert gate.groups == [[1], [1]]
    assert not first.cancel()  # once taken, a batch is the writer's to finish
    assert sorted(sqlite_service.store.summary().asset_updates) == ["s3://k/first", "s3://k/kept"]


def test_a_state_db_failure_is_a_503_with_retry_after_and_the_server_carries_on(
    any_service: CollectorService, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(*args: object) -> None:
        raise OperationalError("INSERT ...", None, Exception("the state DB is down"))

    with serving(any_service, TOKEN, max_body=MAX_BODY) as base:
        port = port_of(base)
        monkeypatch.setattr(any_service.store, "_commit", down)
        for _ in range(2):
            reply = post(port, events("s3://lake/retried"))
            assert reply.status == 503, reply
            assert reply.headers["retry-after"] == "5"
            assert reply.json() == {"error": "state DB unavailable"}
        assert get(port, "/healthz").status == 200
        monkeypatch.undo()
        reply = post(port, events("s3://lake/retried"))
        assert reply.status == 202 and reply.json()["outcomes"] == {"new": 1}
    assert stored_assets(any_service) == 1
    assert refused(any_service, "store_error") == 2  # kept by the listener, and counted
    assert state_errors(any_service) == 2


@pytest.mark.parametrize("settings", [{"intake_queue": 2}])
def test_a_full_queue_is_a_503_at_once_and_what_waits_is_stored(
    sqlite_service: CollectorService, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = Gate(sqlite_service, monkeypatch)
    replies: list[Reply] = []
    with serving(sqlite_service, TOKEN, max_body=MAX_BODY) as base:
        port = port_of(base)

        def send(uri: str) -> None:
            replies.append(post(port, events(uri)))

        waiting = [threading.Thread(target=send, args=(f"s3://q/{n}",)) for n in range(3)]
        waiting[0].start()
        assert gate.entered.wait(10)  # the writer is busy with the first
        for t in waiting[1:]:
            t.start()
        wait_for(lambda: sqlite_service._queue.qsize() == 2, "two requests to wait")
        began = time.monotonic()
        busy = post(port, events("s3://q/refused"))
        assert busy.status == 503 and busy.headers["retry-after"] == "5"
        assert time.monotonic() - began < 1  # not after the writer
        assert get(port, "/healthz").status == 200
        gate.open()
        for t in waiting:
            t.join(30)
    assert [r.status for r in replies] == [202, 202, 202]
    assert stored_assets(sqlite_service) == 3
    assert refused(sqlite_service, "queue_full") == 1


@pytest.mark.parametrize("settings", [{"state_timeout_ms": 500}])
def test_a_hanging_postgresql_write_fails_at_its_lock_timeout_and_the_writer_goes_on(
    postgresql_service: CollectorService, postgresql_url: str
) -> None:
    """Another session holds a lock the write needs (the state DB hangs): the write gives up
    at the state DB's time limit, answered 503, and the writer serves the next request."""
    dsn = make_url(postgresql_url).set(drivername="postgresql").render_as_string(False)
    with serving(postgresql_service, TOKEN, max_body=MAX_BODY) as base:
        port = port_of(base)
        assert post(port, events("s3://h/warm")).status == 202
        with psycopg.connect(dsn) as blocker:
            blocker.execute("LOCK TABLE iw_asset_update IN ACCESS EXCLUSIVE MODE")
            began = time.monotonic()
            reply = post(port, events("s3://h/1"))
            assert reply.status == 503 and reply.headers.get("retry-after") == "5"
            assert 0.4 < time.monotonic() - began < 5
            assert get(port, "/healthz").status == 200
            blocker.rollback()
        assert post(port, events("s3://h/2")).status == 202
    assert stored_assets(postgresql_service) == 2
    assert state_errors(postgresql_service) == 1


# --- scrapes and writes ---------------------------------------------------------------------------
def test_scrapes_during_writes_see_every_answered_event(any_service: CollectorService) -> None:
    with serving(any_service, TOKEN, max_body=MAX_BODY) as base:
        port = port_of(base)
        stop = threading.Event()
        sent: list[int] = []

        def writer(n: int) -> None:
            i = 0
            while not stop.is_set():
                assert post(port, events(f"s3://w/{n}/{i}", f"s3://w/{n}/{i}/b")).status == 202
                sent.append(2)
                i += 1

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        try:
            for _ in range(10):
                answered = sum(sent)
                reply = get(port, "/metrics")
                assert reply.status == 200
                new = EVENTS + '{outcome="new",source="listener"} '
                lines = [x for x in reply.body.decode().splitlines() if x.startswith(new)]
                assert (float(lines[0].rsplit(" ", 1)[1]) if lines else 0) >= answered
                time.sleep(0.05)
        finally:
            stop.set()
            for t in threads:
                t.join(30)
    assert counted(any_service, NEW) == sum(sent) == stored_assets(any_service)


def test_a_scrape_holding_the_metrics_lock_does_not_hold_the_event_loop(
    sqlite_service: CollectorService, port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The render holds the metrics state's lock while it runs; an intake request made during
    it waits for its 202 (the writer observes under that lock), but other connections are
    answered meanwhile."""
    exposition = sqlite_service.exposition
    refresh = exposition._refresh  # called by render()
    rendering = threading.Event()

    def slow_refresh() -> None:
        with sqlite_service.state.lock:  # as a long render holds it
            rendering.set()
            time.sleep(1)
        refresh()

    monkeypatch.setattr(exposition, "_refresh", slow_refresh)
    replies: list[Reply] = []
    scraper = threading.Thread(target=lambda: get(port, "/metrics"))
    poster = threading.Thread(target=lambda: replies.append(post(port, events("s3://l/1"))))
    scraper.start()
    try:
        assert rendering.wait(10)
        poster.start()
        time.sleep(0.05)
        started = time.monotonic()
        assert get(port, "/healthz").status == 200
        took = time.monotonic() - started
    finally:
        scraper.join(10)
        poster.join(10)
    assert [r.status for r in replies] == [202]
    assert took < 0.5, f"/healthz waited {took:.2f}s: the loop was held by the scrape"


# --- shutdown -------------------------------------------------------------------------------------
def test_shutdown_drops_idle_connections_and_a_closed_service_refuses_writes(
    sqlite_service: CollectorService,
) -> None:
    with serving(sqlite_service, TOKEN, max_body=MAX_BODY) as base:
        port = port_of(base)
        assert get(port, "/healthz").status == 200
        idle = connect(port)
        idle.sendall(b"GET /healthz HTTP/1.1\r\n")  # and never the rest
        time.sleep(0.1)
        began = time.monotonic()
    assert time.monotonic() - began < 10  # the server stopped, bounded
    with idle:
        assert closed_by_server(idle)
    with pytest.raises(OSError):
        connect(port, timeout=2)
    sqlite_service.close()
    refused = sqlite_service.submit(Batch(assets=[AssetUpdate(uri="s3://late", timestamp=1.0)]))
    assert isinstance(refused.exception(1), RuntimeError)
    assert not sqlite_service._writer.is_alive()
