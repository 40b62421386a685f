"""Pool advice (impactwatch/pools/): usage by hour of week, windows, replay, advice, apply's
decision, the exporter and the CLI's input checks. Pure: no servers."""

from __future__ import annotations

from decimal import Decimal

import pytest
from prometheus_client import CollectorRegistry

from impactwatch import cli
from impactwatch.catalog.model import Catalog
from impactwatch.pools.advice import (
    AdviceSettings,
    PoolAdvice,
    advise_all,
    pipeline_classes,
)
from impactwatch.pools.airflow_api import AirflowApiError, PoolState
from impactwatch.pools.apply import decide
from impactwatch.pools.job import Advice, AdviceCollector, AdviceJob
from impactwatch.pools.replay import replay, slot_hours
from impactwatch.pools.usage import (
    CRITICAL,
    HOUR,
    SLA_BEARING,
    STANDARD,
    WEEK,
    HourOfWeek,
    PoolTry,
    pool_usage,
)
from impactwatch.pools.windows import Span, cut_day
from tests.support import pool_history as ph

HOURS = HourOfWeek()
SINCE, UNTIL = ph.MONDAY, ph.MONDAY + 4 * WEEK
CATALOG = Catalog.model_validate(ph.CATALOG)


@pytest.fixture(scope="module")
def advice() -> dict[str, PoolAdvice]:
    tries = ph.history(4)
    found = advise_all(
        tries,
        CATALOG,
        configured=ph.STATIC,
        since=SINCE,
        until=UNTIL,
        hours=HOURS,
        settings=AdviceSettings(),
    )
    return {a.pool: a for a in found}


def at(day: int, hour: int) -> int:
    return day * 24 + hour


# --- the seeded pattern is recovered ------------------------------------------------------------
def test_heavy_etl_gets_its_capacity_at_night_and_gives_it_back_by_day(
    advice: dict[str, PoolAdvice],
) -> None:
    s = advice["heavy_etl"].slots
    for day in range(7):
        night = [s[at(day, h)] for h in (2, 3, 4, 5)]
        day_hours = [s[at(day, h)] for h in range(9, 18)]
        assert min(night) > ph.STATIC["heavy_etl"] > max(day_hours), (day, night, day_hours)


def test_api_calls_get_business_hours_on_weekdays_only(advice: dict[str, PoolAdvice]) -> None:
    s = advice["external_apis"].slots
    for day in range(5):
        business = [s[at(day, h)] for h in range(9, 17)]
        night = [s[at(day, h)] for h in (0, 1, 2, 3, 4, 5)]
        assert min(business) > ph.STATIC["external_apis"] > max(night), day
    weekend = [s[at(d, h)] for d in (5, 6) for h in range(24)]
    assert max(weekend) < ph.STATIC["external_apis"]


def test_few_windows_each_with_a_reason_and_effect(advice: dict[str, PoolAdvice]) -> None:
    for a in advice.values():
        assert 2 <= len(a.windows) <= 2 * 4, a.pool
        kinds = {w.days for w in a.windows}
        assert kinds in ({"every day"}, {"weekdays", "weekends"})
        for w in a.windows:
            assert w.reason.startswith(("busy:", "quiet:", "fits:")), w.reason
    night = advice["heavy_etl"].window_at(SINCE + 3 * HOUR, HOURS)  # Monday 03:00
    assert "busy:" in night.reason and "risk_scoring" in night.reason
    assert "busiest week" in night.reason and night.wait_saved > 0 and night.cost_difference > 0
    day = advice["heavy_etl"].window_at(SINCE + 12 * HOUR, HOURS)
    assert "quiet:" in day.reason and day.slot_hours_freed > 0 and day.cost_difference < 0


def test_the_advice_cuts_critical_wait_by_half_at_no_more_slot_hours(
    advice: dict[str, PoolAdvice],
) -> None:
    static = sum(a.static_effect.critical_wait for a in advice.values())
    advised = sum(a.advised_effect.critical_wait for a in advice.values())
    assert static > 0 and advised <= 0.5 * static
    hours_static = sum(a.static_effect.slot_hours for a in advice.values())
    hours_advised = sum(a.advised_effect.slot_hours for a in advice.values())
    assert hours_advised <= hours_static
    assert hours_static == pytest.approx(sum(ph.STATIC.values()) * 168)


def test_critical_deadlines_weigh_more_than_the_rest() -> None:
    tries = ph.history(4)
    as_critical = advise_all(
        tries,
        CATALOG,
        configured=ph.STATIC,
        since=SINCE,
        until=UNTIL,
        hours=HOURS,
        settings=AdviceSettings(),
    )
    plain = advise_all(
        tries,
        Catalog(),
        configured=ph.STATIC,
        since=SINCE,
        until=UNTIL,
        hours=HOURS,
        settings=AdviceSettings(),
    )
    heavy = {a.pool: a for a in as_critical}["heavy_etl"].slots
    heavy_plain = {a.pool: a for a in plain}["heavy_etl"].slots
    night = [at(d, h) for d in range(7) for h in (2, 3, 4, 5)]
    assert sum(heavy[h] for h in night) > sum(heavy_plain[h] for h in night)


def test_pipeline_classes_from_the_catalog() -> None:
    catalog = Catalog.model_validate(
        {
            "pipelines": {
                "a": {"tier": "critical"},
                "b": {"deadline": "06:00 UTC"},
                "c": {},
                "d": {"max_duration": "1h"},
            },
            "datasets": {
                "x": {"produced_by": "c", "tier": "critical"},
                "y": {"produced_by": "e.t", "freshness": "1h"},
            },
        }
    )
    classes = pipeline_classes(catalog)
    assert classes == {
        "a": CRITICAL,
        "b": SLA_BEARING,
        "c": CRITICAL,
        "d": SLA_BEARING,
        "e": SLA_BEARING,
    }
    assert classes.get("unknown", STANDARD) == STANDARD


# --- usage -------------------------------------------------------------------------------------
def test_usage_by_hour_of_week_counts_held_waited_and_peak() -> None:
    m = ph.MONDAY
    tries = [
        PoolTry("p", "d", m + 3600, m + 3600, m + 3 * 3600, cpu_seconds=3600.0),  # 01-03 Mon
        PoolTry("p", "d", m + 3600, m + 5400, m + 9000),  # waits 30 min, demand 01:00-02:00
    ]
    u = pool_usage(tries, m, m + WEEK, {"d": CRITICAL}, HOURS, (0.75, 0.9, 0.95))["p"]
    assert u.weeks == [1] * 168
    assert u.held[1] == pytest.approx(3600 + 1800) and u.held[2] == pytest.approx(3600 + 1800)
    assert u.waiting[1] == pytest.approx(1800)
    assert u.tries[1] == 2 and u.sla_wait[1] == pytest.approx(1800)
    assert u.cpu_cores(1) == pytest.approx(3600 / 5400)
    assert [lv.peak for lv in u.levels[1]] == [2] and [lv.peak for lv in u.levels[2]] == [1]
    assert u.levels[1][0].needs == (2, 2, 2)  # two at once all hour
    assert u.weight[1] == CRITICAL and u.critical[1] == {"d"} and u.weight[5] == STANDARD


def test_hour_of_week_follows_the_time_zone() -> None:
    assert HourOfWeek()(int(ph.MONDAY // HOUR)) == 0
    london_summer = HourOfWeek("Europe/London")
    monday_noon_utc = ph.MONDAY + 26 * WEEK + 12 * HOUR  # 2026-07-06, BST
    assert london_summer(int(monday_noon_utc // HOUR)) == 13


# --- windows and replay ---------------------------------------------------------------------
def test_cut_day_finds_the_night_peak() -> None:
    needs = [1] * 24
    needs[2:6] = [8, 8, 8, 8]
    assert cut_day(needs, 4) == [Span(2, 6, 8), Span(6, 2, 1)]
    assert cut_day(needs, 1) == [Span(0, 24, 8)]
    assert cut_day([3] * 24, 4) == [Span(0, 24, 3)]


def test_cut_day_keeps_every_need_covered_with_few_windows() -> None:
    needs = [2, 2, 8, 8, 8, 8, 9, 3, 2, 12, 12, 20, 20, 18, 12, 12, 12, 5, 4, 4, 4, 4, 3, 2]
    spans = cut_day(needs, 3)
    assert len(spans) <= 3
    for span in spans:
        assert all(span.slots >= needs[h] for h in span.hours)
    assert sorted(h for s in spans for h in s.hours) == list(range(24))


def test_replay_waits_for_a_slot_and_starts_at_a_size_change() -> None:
    m = ph.MONDAY
    tries = [
        PoolTry("p", "d", m + 600, m + 600, m + 2400),  # 30 min
        PoolTry("p", "d", m + 1200, m + 1200, m + 1500),  # waits for the first to end
        PoolTry("p", "d", m + 3000, m + 3000, m + 3600 + 3000),  # 1 h, at 00:50
        PoolTry("p", "d", m + 3300, m + 3300, m + 3400),  # waits until 01:00 (size 2)
    ]
    sizes = [1] * 168
    sizes[1] = 2
    waits = replay(tries, sizes, HOURS)
    assert waits == [0.0, 1200.0, 0.0, 300.0]
    assert replay(tries, [1] * 168, HOURS)[3] == pytest.approx(3600 + 3000 - 3300)
    assert slot_hours(sizes, m, m + WEEK, HOURS) == 169


# --- apply's decision -----------------------------------------------------------------------
def test_decide(advice: dict[str, PoolAdvice]) -> None:
    a = advice["heavy_etl"]
    night = SINCE + 3 * HOUR
    target = a.slots_at(night, HOURS)
    assert decide(a, PoolState("heavy_etl", 4, 0, 0), night, HOURS).action == "set"
    same = decide(a, PoolState("heavy_etl", target, 0, 0), night, HOURS)
    assert same.action == "unchanged"
    noon = SINCE + 12 * HOUR
    busy = decide(a, PoolState("heavy_etl", 14, 6, 0), noon, HOURS)
    assert busy.action == "refused" and "6 tasks running" in busy.message
    assert decide(a, PoolState("heavy_etl", -1, 0, 0), noon, HOURS).action == "refused"


def test_pool_state_from_a_bad_answer_is_a_clear_error() -> None:
    with pytest.raises(AirflowApiError, match="unexpected pool"):
        PoolState.of({"slots": 3})


# --- exporter -----------------------------------------------------------------------------------
def test_exporter_shows_the_current_window_and_the_effect(advice: dict[str, PoolAdvice]) -> None:
    night = SINCE + 3 * HOUR
    job = AdviceJob(CATALOG, None, hours=HOURS, settings=AdviceSettings(), clock=lambda: night)  # type: ignore[arg-type]
    job.state.advice = Advice(list(advice.values()), SINCE, UNTIL)
    job.state.last_success = night
    job.state.errors["state_db"] = 2
    registry = CollectorRegistry(auto_describe=False)
    registry.register(AdviceCollector(job))
    heavy = advice["heavy_etl"]
    got = registry.get_sample_value("impactwatch_pool_advised_slots", {"pool": "heavy_etl"})
    assert got == heavy.slots_at(night, HOURS) > 4
    saved = registry.get_sample_value(
        "impactwatch_pool_advice_wait_saved_seconds", {"pool": "heavy_etl"}
    )
    assert saved == pytest.approx(heavy.static_effect.sla_wait - heavy.advised_effect.sla_wait)
    cost = registry.get_sample_value(
        "impactwatch_pool_advice_cost_difference_dollars", {"pool": "heavy_etl"}
    )
    assert cost == pytest.approx(float(heavy.cost_difference))
    errors = registry.get_sample_value(
        "impactwatch_pool_advice_errors_total", {"reason": "state_db"}
    )
    assert errors == 2
    assert (
        registry.get_sample_value("impactwatch_pool_advice_last_success_timestamp_seconds") == night
    )


def test_slot_hour_cost_uses_the_pool_resources_at_the_catalog_rates(
    advice: dict[str, PoolAdvice],
) -> None:
    # heavy_etl: 6 CPU x 0.0416 + 12 GiB x 0.0045
    assert advice["heavy_etl"].slot_hour_cost == Decimal("0.3036")


# --- CLI input checks ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--static", "heavy_etl"], "write POOL=SLOTS"),
        (["--tz", "Mars/Olympus"], "not a time zone"),
        (["--weeks", "0"], "--weeks"),
        (["--until", "yesterday"], "ISO 8601"),
        (["--windows", "0"], "--windows"),
    ],
)
def test_cli_bad_input_is_one_line(
    tmp_path: object, extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["pools", "advise", "--catalog", "examples/catalog.yaml", *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1


def test_cli_apply_needs_the_airflow_api(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["pools", "apply", "--catalog", "examples/catalog.yaml"]) == 2
    assert "--airflow-api" in capsys.readouterr().err


def test_exporter_shows_usage_by_hour_of_week(advice: dict[str, PoolAdvice]) -> None:
    job = AdviceJob(CATALOG, None, hours=HOURS, settings=AdviceSettings(), clock=lambda: SINCE)  # type: ignore[arg-type]
    job.state.advice = Advice(list(advice.values()), SINCE, UNTIL)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(AdviceCollector(job))
    name = "impactwatch_pool_usage_by_hour_slots"

    def used(day: str, hour: str) -> float:
        got = registry.get_sample_value(
            name, {"pool": "heavy_etl", "day": day, "hour": hour, "state": "running"}
        )
        assert got is not None
        return got

    assert used("1 Mon", "03") > 2 * used("1 Mon", "12")  # the night ETL peak
    assert used("1 Mon", "03") == pytest.approx(advice["heavy_etl"].running[3])
    series = [s for m in registry.collect() if m.name == name for s in m.samples]
    assert len(series) == len(advice) * 168 * 2


def test_prometheus_config_scrapes_the_advice_when_told() -> None:
    import yaml

    from impactwatch.alert_rules.prometheus_config import render_prometheus
    from impactwatch.alert_rules.settings import RuleSettings

    jobs = yaml.safe_load(render_prometheus(RuleSettings()))["scrape_configs"]
    assert "impactwatch-pools" not in [j["job_name"] for j in jobs]
    told = RuleSettings(pool_advice_targets=["127.0.0.1:9467"])
    jobs = yaml.safe_load(render_prometheus(told))["scrape_configs"]
    pools = [j for j in jobs if j["job_name"] == "impactwatch-pools"]
    assert pools[0]["static_configs"][0]["targets"] == ["127.0.0.1:9467"]


def test_apply_counts_what_each_pass_did() -> None:
    from impactwatch.pools.apply import ApplyCounts, Change

    counts = ApplyCounts()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(counts)
    counts.add([Change("heavy_etl", "w", 4, 8, "set", "")])
    counts.add(
        [
            Change("heavy_etl", "w", 8, 8, "unchanged", ""),
            Change("heavy_etl", "w", 8, 2, "refused", "6 tasks running"),
        ]
    )
    name = "impactwatch_pool_apply_changes_total"
    for action, n in (("set", 1), ("unchanged", 1), ("refused", 1), ("failed", 0)):
        got = registry.get_sample_value(name, {"pool": "heavy_etl", "action": action})
        assert got == n, action
