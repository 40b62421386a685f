"""The collector's event-loop HTTP server (impactwatch/collector/intake/server.py) on real
sockets, in front of a real CollectorService: early answers, slow, silent and vanishing
clients, the two write paths (SQLite in the loop, PostgreSQL in a greenlet on the loop's asyncio
connection), a failing or hanging state DB, a poller holding the store's lock, shutdown, and the
threads it keeps.

No test here polls Airflow: the service's Airflow URL names a file that is never opened, so
these tests do not wait for a populated Airflow DB.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from impactwatch.collector.intake.server import PARSE_IN_LOOP, CollectorServer
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from impactwatch.catalog.loader import load_catalog
from impactwatch.collector.http_app import CollectorApp, serve
from impactwatch.collector.intake.parse import SCHEMA
from impactwatch.collector.service import CollectorService
from impactwatch.collector.settings import CollectorSettings
from impactwatch.collector.state.schema import asset_update_t
from impactwatch.devtools.airflow_home import reader_db_url
from tests.integration.helpers import EXAMPLE_CATALOG
from tests.support.postgres import create_database, drop_database

pytestmark = pytest.mark.integration

TOKEN = "intake-server-token"
MAX_BODY = 512 * 1024
EVENTS = "impactwatch_collector_events_total"
REJECTED = {"source": "listener", "outcome": "rejected"}
NEW = {"source": "listener", "outcome": "new"}


# --- a collector, SQLite or PostgreSQL state DB ---------------------------------------------------
def build_service(tmp_path: Path, state_db: str) -> CollectorService:
    settings = CollectorSettings(
        airflow_db=f"sqlite:///{tmp_path / 'airflow-never-read.db'}",
        state_db=state_db,
        catalog=str(EXAMPLE_CATALOG),
    )
    return CollectorService(settings, load_catalog(EXAMPLE_CATALOG))


@pytest.fixture
def sqlite_service(tmp_path: Path) -> Iterator[CollectorService]:
    service = build_service(tmp_path, f"sqlite:///{tmp_path / 'state.db'}")
    try:
        yield service
    finally:
        service.close()


@pytest.fixture
def postgresql_service(pg_base_url: str, tmp_path: Path) -> Iterator[CollectorService]:
    name = f"impactwatch_intake_{uuid.uuid4().hex[:8]}"
    url = create_database(pg_base_url, name)
    try:
        service = build_service(tmp_path, reader_db_url(url))
        try:
            yield service
        finally:
            service.close()
    finally:
        drop_database(pg_base_url, name)


@pytest.fixture(params=["sqlite", "postgresql"])
def any_service(request: pytest.FixtureRequest) -> CollectorService:
    """Both write paths: SQLite written in the loop, PostgreSQL in a greenlet on the loop's own
    asyncio connection."""
    service: CollectorService = request.getfixturevalue(f"{request.param}_service")
    return service


@contextmanager
def serving(service: CollectorService, **options: Any) -> Iterator[CollectorServer]:
    """The collector's app on its event-loop server, in a thread; stopped after."""
    app = CollectorApp(service, TOKEN, MAX_BODY)
    if options:
        server = CollectorServer(app, "127.0.0.1", 0, **options)
        thread = threading.Thread(target=server.serve_forever, name=server.thread_name)
        thread.daemon = True
        thread.start()
    else:
        server, thread = serve(app, "127.0.0.1", 0)
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.fixture
def server(sqlite_service: CollectorService) -> Iterator[CollectorServer]:
    with serving(sqlite_service) as running:
        yield running


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


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_all(sock: socket.socket) -> bytes:
    """Everything up to the server's end of the connection (it closes after its answer)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def head(method: str, path: str, length: int | None = None, token: str | None = TOKEN) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: collector"]
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    if length is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {length}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def post(port: int, body: bytes, token: str | None = TOKEN) -> Reply:
    with connect(port) as sock:
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
    """Whether the server ended the connection (EOF or reset) within the socket's timeout."""
    try:
        return sock.recv(1) == b""
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


def counted(service: CollectorService, labels: dict[str, str]) -> float:
    return service.registry.get_sample_value(EVENTS, labels) or 0.0


def threads_of(server: CollectorServer) -> list[threading.Thread]:
    """The loop thread (named `thread_name`) and the WSGI workers (`thread_name`_N)."""
    name = server.thread_name
    return [t for t in threading.enumerate() if t.name == name or t.name.startswith(f"{name}_")]


# --- early answers --------------------------------------------------------------------------------
def test_a_wrong_token_and_an_oversized_body_are_answered_while_the_client_sends(
    sqlite_service: CollectorService, server: CollectorServer
) -> None:
    big = b"x" * (900 * 1024)  # over MAX_BODY, under the 1 MiB the server reads off
    before = counted(sqlite_service, REJECTED)
    answers = {}
    for token in ("wrong", TOKEN):
        with connect(server.server_port) as sock:
            sock.sendall(head("POST", "/v1/events", len(big), token))
            sock.sendall(big)  # the answer is already on its way: it must not be lost
            answers[token] = parse(read_all(sock))
    wrong, too_large = answers["wrong"], answers[TOKEN]
    assert wrong.status == 401 and wrong.headers["www-authenticate"].startswith("Bearer")
    assert too_large.status == 413 and str(MAX_BODY) in too_large.json()["error"]
    assert counted(sqlite_service, REJECTED) == before + 2
    assert stored_assets(sqlite_service) == 0
    assert post(server.server_port, events("s3://x/after")).status == 202


def test_an_oversized_body_to_another_path_is_answered_and_the_connection_ended(
    server: CollectorServer,
) -> None:
    """A 413 on a path other than the intake: the body sent with the head counts as read."""
    big = b"x" * (200 * 1024)
    with connect(server.server_port) as sock:
        sock.sendall(head("POST", "/metrics", len(big)) + big)
        answer = b""
        while not answer.endswith(b"body too large"):
            chunk = sock.recv(65536)
            assert chunk, answer
            answer += chunk
        assert parse(answer).status == 413
        # the client keeps its socket open: the server, having read the whole body, lets go
        wait_for(lambda: not server.exchanges, "the server to end the answered connection")


# --- bodies ---------------------------------------------------------------------------------------
def test_a_large_body_is_parsed_on_a_worker_and_stored(
    sqlite_service: CollectorService, server: CollectorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed_on: list[str] = []
    take = server.app.take

    def recording_take(body: bytes) -> Any:
        parsed_on.append(threading.current_thread().name)
        return take(body)

    monkeypatch.setattr(server.app, "take", recording_take)
    uris = [f"s3://lake/large/{i:05d}" for i in range(2000)]
    large = events(*uris)
    assert len(large) > PARSE_IN_LOOP
    reply = post(server.server_port, large)
    assert reply.status == 202 and reply.json() == {"accepted": 2000, "outcomes": {"new": 2000}}
    assert post(server.server_port, events("s3://lake/small")).status == 202
    worker, loop = parsed_on
    assert worker.startswith(f"{server.thread_name}_") and loop == server.thread_name
    assert stored_assets(sqlite_service) == 2001


def test_a_request_sent_in_small_pieces_with_pauses_is_stored(
    sqlite_service: CollectorService, server: CollectorServer
) -> None:
    body = events(*(f"s3://lake/piece/{i}" for i in range(20)))
    data = head("POST", "/v1/events", len(body)) + body
    with connect(server.server_port) as sock:
        for start in range(0, len(data), 40):
            sock.sendall(data[start : start + 40])
            time.sleep(0.005)
        reply = parse(read_all(sock))
    assert reply.status == 202 and reply.json()["outcomes"] == {"new": 20}
    assert stored_assets(sqlite_service) == 20


# --- slow, silent and vanishing clients -----------------------------------------------------------
def test_a_silent_client_is_cut_off_after_the_timeout_while_others_are_served(
    sqlite_service: CollectorService,
) -> None:
    with serving(sqlite_service, timeout=0.5) as server:
        port = server.server_port
        slow_reply: list[Reply] = []

        def slow_client() -> None:
            """Sends its request over ~1.5 s, never silent for as long as the timeout."""
            body = events("s3://lake/slow")
            data = head("POST", "/v1/events", len(body)) + body
            with connect(port) as sock:
                step = len(data) // 15 + 1
                for start in range(0, len(data), step):
                    sock.sendall(data[start : start + step])
                    time.sleep(0.1)
                slow_reply.append(parse(read_all(sock)))

        slow = threading.Thread(target=slow_client)
        slow.start()
        try:
            half = connect(port)
            mute = connect(port)
            half.sendall(b"POST /v1/events HTTP/1.1\r\nHost: coll")  # half a head
            started = time.monotonic()
            assert get(port, "/healthz").status == 200  # others are served meanwhile
            assert post(port, events("s3://lake/meanwhile")).status == 202
            for sock in (half, mute):
                with sock:
                    assert closed_by_server(sock)
            waited = time.monotonic() - started
            assert 0.4 <= waited < 5, waited
        finally:
            slow.join(30)
        assert [r.status for r in slow_reply] == [202]
    assert stored_assets(sqlite_service) == 2


def test_clients_that_go_away_mid_request_do_not_break_the_server(
    sqlite_service: CollectorService, server: CollectorServer
) -> None:
    port = server.server_port
    body = events("s3://lake/vanished")
    request = head("POST", "/v1/events", len(body)) + body
    for cut in (len(request) - len(body) // 2, 20):  # mid-body, mid-head
        with connect(port) as sock:
            sock.sendall(request[:cut])
    with connect(port) as sock:  # reset mid-body
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.sendall(request[: len(request) - 10])
    wait_for(lambda: not server.exchanges, "the server to drop the dead connections")
    assert stored_assets(sqlite_service) == 0
    reply = post(port, events("s3://lake/next"))
    assert reply.status == 202 and reply.json()["outcomes"] == {"new": 1}
    assert get(port, "/healthz").status == 200


# --- the write paths ------------------------------------------------------------------------------
def test_concurrent_intake_requests_are_all_accepted_and_stored_once(
    any_service: CollectorService,
) -> None:
    clients, per_client = 64, 3
    replies: dict[int, Reply | BaseException] = {}
    with serving(any_service) as server:
        start = threading.Barrier(clients, timeout=30)

        def client(n: int) -> None:
            try:
                start.wait()
                uris = [f"s3://c/{n}/{i}" for i in range(per_client)]
                replies[n] = post(server.server_port, events(*uris))
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
        again = post(server.server_port, events(*(f"s3://c/7/{i}" for i in range(3))))
        assert again.json()["outcomes"] == {"duplicate": per_client}
    assert stored_assets(any_service) == clients * per_client
    assert counted(any_service, NEW) == clients * per_client
    writer = any_service.store.writer
    assert writer.jobs == clients + 1 and 1 <= writer.groups <= clients + 1
    assert writer._thread is None  # the intake never used the writer thread (nor its wake-ups)


def test_a_state_db_failure_is_a_503_with_retry_after_and_the_server_carries_on(
    any_service: CollectorService, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(*args: object) -> None:
        raise OperationalError("INSERT ...", None, Exception("the state DB is down"))

    with serving(any_service) as server:
        port = server.server_port
        monkeypatch.setattr(any_service.store, "_commit", down)  # both paths' group write
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
    assert counted(any_service, REJECTED) == 0  # kept by the listener, not refused


# --- the server itself ----------------------------------------------------------------------------
def test_shutdown_ends_the_loop_thread_and_drops_open_connections(
    sqlite_service: CollectorService,
) -> None:
    server, thread = serve(CollectorApp(sqlite_service, TOKEN, MAX_BODY), "127.0.0.1", 0)
    idle = None
    try:
        assert thread.name == server.thread_name
        assert get(server.server_port, "/healthz").status == 200  # a worker thread started
        idle = connect(server.server_port)
        idle.sendall(b"GET /healthz HTTP/1.1\r\n")  # and never the rest
        wait_for(lambda: server.exchanges, "the server to take the idle connection")
        server.shutdown()
        thread.join(5)
        assert not thread.is_alive()
        assert closed_by_server(idle)
        server.server_close()
        wait_for(lambda: not threads_of(server), "the server's threads to end")
    finally:
        if idle is not None:
            idle.close()
        server.shutdown()
        server.server_close()


def test_shutdown_before_the_loop_runs_stops_it_at_once(
    sqlite_service: CollectorService,
) -> None:
    """`serve` starts the loop in a thread; a stop asked for before that thread got going (a
    signal at start-up) must end `serve_forever` quietly, not after `shutdown`'s 5 s wait."""
    server = CollectorServer(CollectorApp(sqlite_service, TOKEN, MAX_BODY), "127.0.0.1", 0)
    stopper = threading.Thread(target=server.shutdown)
    stopper.start()
    try:
        # shutdown() has marked the server closed and queued the loop's stop
        wait_for(lambda: server._closed and server.loop._ready, "the stop to be queued")
        raised: BaseException | None = None
        try:
            server.serve_forever()
        except Exception as exc:
            raised = exc
        stopper.join(1)
        shutdown_returned = not stopper.is_alive()
        loop_closed = server.loop.is_closed()
    finally:
        server._stopped.set()  # if the bug is there, do not wait for shutdown's 5 s twice
        stopper.join(10)
        if not server.loop.is_closed():
            server.loop.close()
        server.server_close()
    assert raised is None, f"serve_forever raised {raised!r}"
    assert shutdown_returned, "shutdown() still waiting for the loop"
    assert loop_closed


def test_the_server_keeps_one_loop_thread_and_at_most_four_workers(
    server: CollectorServer,
) -> None:
    port = server.server_port
    for _ in range(100):
        assert get(port, "/healthz").status == 200
    statuses: list[int] = []
    start = threading.Barrier(60, timeout=30)

    def client() -> None:
        start.wait()
        statuses.append(get(port, "/healthz").status)

    threads = [threading.Thread(target=client) for _ in range(60)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert statuses == [200] * 60
    names = [t.name for t in threads_of(server)]
    assert names.count(server.thread_name) == 1
    assert 1 <= len(names) - 1 <= 4, names


def test_a_slow_scrape_does_not_hold_up_the_intake(
    any_service: CollectorService, monkeypatch: pytest.MonkeyPatch
) -> None:
    with serving(any_service) as server:
        port = server.server_port
        exposition = server.app.exposition
        render = exposition.render
        rendering = threading.Event()

        def slow_render() -> bytes:
            rendering.set()
            time.sleep(1)
            return render()

        monkeypatch.setattr(exposition, "render", slow_render)
        scrape: list[Reply] = []
        scraper = threading.Thread(target=lambda: scrape.append(get(port, "/metrics")))
        scraper.start()
        try:
            assert rendering.wait(10)
            started = time.monotonic()
            reply = post(port, events("s3://lake/during-scrape"))
            took = time.monotonic() - started
            assert reply.status == 202
            assert took < 0.5, f"the intake waited {took:.2f}s for a scrape"
            assert scraper.is_alive()  # the scrape was still going
        finally:
            scraper.join(10)
        assert [r.status for r in scrape] == [200]


@pytest.mark.parametrize(
    ("backend", "request_kind"),
    [("sqlite", "intake"), ("postgresql", "intake"), ("sqlite", "wrong token")],
)
def test_a_scrape_holding_the_metrics_lock_does_not_hold_the_loop(
    backend: str, request_kind: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real render holds the metrics state's lock for its whole length (~0.5 s at 10,000
    DAGs). An intake request made during it may wait for its answer, but the loop must not:
    other connections (here /healthz) are answered meanwhile."""
    service: CollectorService = request.getfixturevalue(f"{backend}_service")
    with serving(service) as server:
        port = server.server_port
        exposition = server.app.exposition
        refresh = exposition._refresh  # called by render() under the state lock
        rendering = threading.Event()

        def slow_refresh(dirty: Any) -> None:
            rendering.set()
            time.sleep(1)
            refresh(dirty)

        monkeypatch.setattr(exposition, "_refresh", slow_refresh)
        sent = threading.Event()
        replies: list[Reply] = []

        def intake() -> None:
            body = events("s3://lake/during-locked-scrape")
            token = TOKEN if request_kind == "intake" else "wrong"
            with connect(port) as sock:
                sock.sendall(head("POST", "/v1/events", len(body), token) + body)
                sent.set()
                replies.append(parse(read_all(sock)))

        scraper = threading.Thread(target=lambda: get(port, "/metrics"))
        poster = threading.Thread(target=intake)
        scraper.start()
        try:
            assert rendering.wait(10)
            poster.start()
            assert sent.wait(10)
            time.sleep(0.05)  # the loop takes the request up at once
            started = time.monotonic()
            assert get(port, "/healthz").status == 200
            took = time.monotonic() - started
        finally:
            scraper.join(10)
            if poster.ident is not None:
                poster.join(10)
        assert [r.status for r in replies] == [202 if request_kind == "intake" else 401]
        assert took < 0.5, f"/healthz waited {took:.2f}s: the loop was held by the scrape"


def test_a_poller_write_in_progress_delays_the_intake_but_not_the_loop(
    any_service: CollectorService,
) -> None:
    """While another thread holds the store's lock (a poll cycle writing), /healthz is served
    at once; the intake's 202 comes when the lock is released."""
    with serving(any_service) as server:
        port = server.server_port
        assert post(port, events("s3://p/warm")).status == 202  # the loop connection is open
        replies: list[Reply] = []
        with any_service.store._lock:
            writer = threading.Thread(target=lambda: replies.append(post(port, events("s3://p/1"))))
            writer.start()
            time.sleep(0.3)
            began = time.monotonic()
            assert get(port, "/healthz").status == 200
            assert time.monotonic() - began < 0.5
            assert replies == []  # waiting for the lock, not refused
        writer.join(10)
        assert [r.status for r in replies] == [202]
    assert stored_assets(any_service) == 2


def test_a_hanging_postgresql_write_is_abandoned_with_503s_and_the_next_one_reconnects(
    postgresql_service: CollectorService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that gets no answer (a black-holed state DB) is given up after WRITE_TIMEOUT:
    503 with Retry-After, its connection dropped; the next group opens a new one."""
    from sqlalchemy.util.concurrency import await_

    from impactwatch.collector import intake_server

    store = postgresql_service.store
    merge = store._merge_group

    def hanging(*args: object) -> None:
        await_(asyncio.sleep(30))  # inside the greenlet, like a read that never returns

    monkeypatch.setattr(intake_server, "WRITE_TIMEOUT", 0.5)
    with serving(postgresql_service) as server:
        port = server.server_port
        assert post(port, events("s3://h/warm")).status == 202
        first = store._loop_link.raw if store._loop_link else None
        assert first is not None
        monkeypatch.setattr(store, "_merge_group", hanging)
        began = time.monotonic()
        reply = post(port, events("s3://h/1"))
        assert reply.status == 503 and reply.headers.get("retry-after") == "5"
        assert 0.4 < time.monotonic() - began < 5
        assert get(port, "/healthz").status == 200
        monkeypatch.setattr(store, "_merge_group", merge)
        assert post(port, events("s3://h/2")).status == 202
        assert store._loop_link.raw is not first  # a new connection
    assert stored_assets(postgresql_service) == 2
