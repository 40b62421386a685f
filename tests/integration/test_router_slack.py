"""Slack delivery through the real slack_sdk to a local Slack stand-in: retries on 429 and 5xx,
error codes, posts whose answer was lost, a crash between post and commit, an HA pair of routers
on one PostgreSQL."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from impactwatch.router.delivery import Pacer
from impactwatch.router.metrics import RouterCollector
from impactwatch.router.service import RouterService
from impactwatch.router.settings import RouterSettings
from tests.support.postgres import create_database, drop_database
from tests.support.slack_standin import SlackStandIn
from tests.unit.test_router_support import alert, catalog, notification

pytestmark = pytest.mark.integration
MARKET = {"dataset": "market_data", "team": "markets"}


@pytest.fixture
def slack() -> Iterator[SlackStandIn]:
    standin = SlackStandIn()
    yield standin
    standin.stop()


def router(slack: SlackStandIn, state_db: str, **overrides: object) -> RouterService:
    settings = RouterSettings(
        state_db=state_db,
        slack_bot_token=slack.token,
        slack_api_url=slack.url,
        settle_seconds=0,
        channel_interval=0,
        **overrides,
    )
    return RouterService(settings, catalog())


@pytest.fixture
def service(slack: SlackStandIn, tmp_path: Path) -> Iterator[RouterService]:
    svc = router(slack, f"sqlite:///{tmp_path / 'router.db'}")
    yield svc
    svc.close()


def sample(svc: RouterService, name: str, **labels: str) -> float:
    registry = CollectorRegistry()
    registry.register(RouterCollector(svc.stats))
    return registry.get_sample_value(name, labels) or 0.0


def calls(svc: RouterService, method: str, outcome: str) -> float:
    return sample(svc, "impactwatch_router_slack_calls_total", method=method, outcome=outcome)


def test_posts_updates_and_thread_replies_reach_slack(
    slack: SlackStandIn, service: RouterService
) -> None:
    service.handle(notification(alert(**MARKET)))
    assert service.worker.drain(20)
    (post,) = slack.top_level("#markets-data")
    assert post.text == "Warning: Market prices — out of date"
    assert post.metadata and post.metadata["event_type"] == "impactwatch_message"
    service.handle(notification(alert(**MARKET, severity="critical")))
    assert service.worker.drain(20)
    update = slack.calls("chat.update")[-1]
    assert update.args["channel"] == slack.channel_id("markets-data")  # the id, not the name
    assert post.edits == 1 and post.text == "Critical: Market prices — out of date"
    (reply,) = slack.replies(post.ts)
    assert reply.text == "Severity raised to *critical*."
    assert calls(service, "chat.postMessage", "ok") == 3  # message, escalation, reply


def test_429_waits_for_retry_after_and_loses_or_duplicates_nothing(
    slack: SlackStandIn, service: RouterService
) -> None:
    slack.fail("chat.postMessage", status=429, retry_after=1, times=3)
    service.handle(notification(alert(**MARKET)))
    assert service.worker.drain(30, everything=True)
    attempts = slack.calls("chat.postMessage")
    assert [c.status for c in attempts] == [429, 429, 429, 200]
    assert attempts[-1].at - attempts[0].at >= 2.0  # waited as told
    assert len(slack.top_level()) == 1
    assert calls(service, "chat.postMessage", "rate_limited") == 3


def test_a_long_retry_after_goes_back_to_the_outbox_instead_of_blocking(
    slack: SlackStandIn, service: RouterService
) -> None:
    slack.fail("chat.postMessage", status=429, retry_after=30)
    service.handle(notification(alert(**MARKET)))
    began = time.monotonic()
    service.worker.run_once()
    assert time.monotonic() - began < 5  # not slept through in the thread
    assert slack.top_level() == [] and service.worker.outbox.next_due() > service.clock() + 25
    service.worker.clock = lambda: time.time() + 31  # 31 s later ...
    service.worker.pacer = Pacer(0)  # ... the channel's hold has passed too
    assert service.worker.drain(20)
    assert len(slack.top_level()) == 1


def test_user_group_handles_in_the_catalog_resolve_to_ids(
    slack: SlackStandIn, service: RouterService
) -> None:
    slack.user_groups = {"data-platform-oncall": "S0PLATFORM"}
    service.load_user_groups()
    assert service.ctx.groups == {"data-platform-oncall": "S0PLATFORM"}


def test_passing_error_codes_are_retried_later_and_counted_failed(
    slack: SlackStandIn, service: RouterService
) -> None:
    slack.fail("chat.postMessage", error="fatal_error")  # refusals for good: test_router_refusals
    service.handle(notification(alert(**MARKET)))
    service.worker.run_once()
    assert slack.top_level() == []
    assert calls(service, "chat.postMessage", "failed") == 1
    service.worker.clock = lambda: time.time() + 5  # the backoff has passed
    assert service.worker.drain(20)
    assert [m.channel for m in slack.top_level()] == [slack.channel_id("#markets-data")]


@pytest.mark.parametrize(
    "fault",
    [
        {"status": 500},  # Slack failed before posting
        {"status": 500, "after_effect": True},  # posted, then answered 500
        {"drop": True, "after_effect": True},  # posted, then the connection dropped
        {"status": 503, "after_effect": True},
    ],
)
def test_a_post_with_an_unknown_outcome_is_looked_for_before_posting_again(
    slack: SlackStandIn, service: RouterService, fault: dict
) -> None:
    slack.fail("chat.postMessage", **fault)
    service.handle(notification(alert(**MARKET)))
    service.worker.run_once()
    service.worker.clock = lambda: time.time() + 5
    assert service.worker.drain(20)
    assert len(slack.top_level("#markets-data")) == 1
    assert slack.calls("conversations.history"), "the unsure post was looked for"
    if fault.get("after_effect"):
        assert len(slack.calls("chat.postMessage")) == 1  # found: not posted again


def test_chat_update_5xx_is_retried_by_the_sdk(slack: SlackStandIn, service: RouterService) -> None:
    service.handle(notification(alert(**MARKET)))
    assert service.worker.drain(20)
    slack.fail("chat.update", status=503)
    service.handle(notification(alert(**MARKET, severity="critical")))
    assert service.worker.drain(20)
    assert [c.status for c in slack.calls("chat.update")] == [503, 200]
    assert slack.top_level("#markets-data")[0].text.startswith("Critical")


def test_a_crash_between_post_and_commit_does_not_post_twice(
    slack: SlackStandIn, tmp_path: Path
) -> None:
    state_db = f"sqlite:///{tmp_path / 'router.db'}"
    first = router(slack, state_db, lease_seconds=1)
    first.handle(notification(alert(**MARKET)))

    class Crash(BaseException):
        pass

    real_set = first.worker.outbox.set

    def crash_after_post(row: object, **values: object) -> bool:
        if "ts" in values:
            raise Crash  # the process died right after Slack said ok
        return real_set(row, **values)

    first.worker.outbox.set = crash_after_post  # type: ignore[method-assign]
    with pytest.raises(Crash):
        first.worker.run_once()
    first.store.close()
    assert len(slack.top_level()) == 1
    second = router(slack, state_db)
    try:
        second.worker.clock = lambda: time.time() + 2  # the lease ran out
        assert second.worker.drain(20)
        assert len(slack.top_level()) == 1
        assert len(slack.calls("chat.postMessage")) == 1
        second.handle(notification(alert(**MARKET, severity="critical")))
        assert second.worker.drain(20)
        assert slack.top_level("#markets-data")[0].edits == 1  # the found message is updated
    finally:
        second.close()


def test_two_replicas_on_one_postgresql_never_double_send(
    slack: SlackStandIn, pg_base_url: str
) -> None:
    name = f"impactwatch_router_ha_{uuid.uuid4().hex[:8]}"
    url = create_database(pg_base_url, name).replace("postgresql://", "postgresql+psycopg://")
    replicas = [router(slack, url, delivery_workers=3) for _ in range(2)]
    try:
        for svc in replicas:
            svc.worker.start()
        datasets = ["market_data", "customer_risk_scores", "regulatory_submission"]
        for n in range(3):
            for svc in replicas:  # an HA pair of Alertmanagers: every notification twice
                for ds, team in zip(datasets, ["markets", "risk", "compliance"], strict=True):
                    sev = "critical" if n == 2 else "warning"
                    svc.handle(notification(alert(dataset=ds, team=team, severity=sev)))
        for svc in replicas:
            svc.worker.stop()
        for svc in replicas:
            assert svc.worker.drain(30)
        tokens = [json.dumps(m.metadata) for m in slack.posts()]
        assert len(tokens) == len(set(tokens))
        channels = sorted(m.channel for m in slack.top_level())
        expected = ["#compliance-alerts", "#data-incidents", "#markets-data", "#risk-alerts"]
        assert channels == sorted(slack.channel_id(c) for c in expected)
    finally:
        for svc in replicas:
            svc.close()
        drop_database(pg_base_url, name)


def _wait_for(check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


@pytest.fixture
def pg_router_db(pg_base_url: str) -> Iterator[str]:
    name = f"impactwatch_router_lease_{uuid.uuid4().hex[:8]}"
    yield create_database(pg_base_url, name).replace("postgresql://", "postgresql+psycopg://")
    drop_database(pg_base_url, name)


def test_a_delivery_held_by_a_crashed_replica_is_taken_over_after_one_lease(
    slack: SlackStandIn, pg_router_db: str
) -> None:
    crashed = router(slack, pg_router_db, lease_seconds=1)
    crashed.handle(notification(alert(**MARKET)))
    (held,) = crashed.worker.outbox.claim(crashed.clock())  # it took the row, then died
    crashed.store.close()
    survivor = router(slack, pg_router_db, lease_seconds=1, delivery_workers=1)
    try:
        assert survivor.worker.outbox.claim(survivor.clock()) == []  # leased: not doubled
        survivor.worker.start()
        _wait_for(lambda: len(slack.top_level()) == 1)
        survivor.worker.stop()
        assert len(slack.calls("chat.postMessage")) == 1
        assert held.key == f"{held.incident_id}:primary"
    finally:
        survivor.close()


def test_a_live_replica_keeps_its_lease_through_a_slow_slack_call(
    slack: SlackStandIn, pg_router_db: str
) -> None:
    """Leases are short (a crash frees a row quickly) but renewed while the worker lives: the
    other replica never takes over a post still in flight (Slack has no idempotency key, and
    this post is not in the channel yet for it to find)."""
    first, second = (
        router(slack, pg_router_db, lease_seconds=2, delivery_workers=1) for _ in range(2)
    )
    try:
        slack.fail("chat.postMessage", delay=5)  # two and a half leases long
        first.handle(notification(alert(**MARKET)))
        first.worker.start()
        _wait_for(lambda: _post_token(first) is not None)  # the post is on its way
        second.worker.start()
        _wait_for(lambda: len(slack.top_level()) == 1)
        for svc in (first, second):
            svc.worker.stop()
        assert len(slack.calls("chat.postMessage")) == 1
        assert slack.calls("conversations.history") == []  # never taken over
    finally:
        first.close()
        second.close()


def _post_token(svc: RouterService) -> str | None:
    from sqlalchemy import select

    from impactwatch.router.tables import message_t

    with svc.store.read() as conn:
        return conn.execute(select(message_t.c.post_token)).scalar()
