"""The pool's settings projected from the run's (``PoolSettings.from_settings``), and the
discovery config from them (``DiscoverConfig.from_settings``): each field from its setting."""

from __future__ import annotations

from orchestrator.config.settings import RunSettings
from orchestrator.discovery.rules import DiscoverConfig, Source
from orchestrator.engine.pace import PaceSettings
from orchestrator.engine.pool_types import PoolSettings
from orchestrator.engine.retry import RetryPolicy
from orchestrator.service.preflight import patience


def test_every_pool_setting_comes_from_its_run_setting() -> None:
    settings = RunSettings.of(
        concurrency=9,
        per_region=5,
        per_region_floor=3,
        adaptive=False,
        rate=12.5,
        max_attempts=4,
        retry_time=100.0,
        retry_budget=7.0,
        failure_min_results=11,
        failure_percent=33.0,
        grace_period=4.0,
        max_duration=60.0,
        reconcile_skew=20.0,
        unreachable_after=30.0,
    )
    pool = PoolSettings.from_settings(settings, {"cn-east-2": 4}, {"k": 2.0})
    assert (pool.concurrency, pool.per_region, pool.per_region_floor) == (9, 5, 3)
    assert (pool.adaptive, pool.rate, pool.retry_budget_percent) == (False, 12.5, 7.0)
    assert (pool.failure_min_results, pool.failure_percent) == (11, 33.0)
    assert (pool.grace_period, pool.max_duration, pool.reconcile_skew_s) == (4.0, 60.0, 20.0)
    assert pool.retry == RetryPolicy.from_settings(settings)
    assert pool.retry.max_attempts == 4
    assert pool.pace == PaceSettings(ceiling=12.5)
    assert dict(pool.initial_limits) == {"cn-east-2": 4}
    assert dict(pool.initial_rates) == {"k": 2.0}
    assert pool.unreachable_after_s == 30.0


def test_no_pace_no_unreachable_stop_and_the_retry_time_bounds_the_wait() -> None:
    pool = PoolSettings.from_settings(RunSettings.of(pace=False, unreachable_after=0.0), {})
    assert pool.pace is None
    assert pool.unreachable_after_s is None
    assert dict(pool.initial_rates) == {}
    longer = RunSettings.of(unreachable_after=900.0, retry_time=120.0)
    assert PoolSettings.from_settings(longer, {}).unreachable_after_s == 120.0


def test_the_preflight_waits_as_long_as_the_pool_for_a_service_never_reached() -> None:
    assert patience(RunSettings.of(unreachable_after=30.0)) == 30.0
    assert patience(RunSettings.of(unreachable_after=900.0, retry_time=120.0)) == 120.0
    assert patience(RunSettings.of(unreachable_after=0.0, retry_time=120.0)) == 120.0  # off


def test_discovery_lists_the_connections_project_when_the_file_names_no_source() -> None:
    settings = RunSettings.of(project_id="ABCDEF0123456789ABCDEF0123456789", region="cn-north-1")
    config = DiscoverConfig.from_settings(settings, {})
    assert config.sources == (Source("abcdef0123456789abcdef0123456789", "cn-north-1"),)
    assert config.service == "csbs"
    assert DiscoverConfig.from_settings(RunSettings.of(service="cbr"), {}).sources == ()
    assert DiscoverConfig.from_settings(RunSettings.of(service="cbr"), {}).service == "cbr"


def test_the_pool_and_the_look_ups_pace_from_one_projection() -> None:
    from orchestrator.engine.paced_service import Pacing

    assert PaceSettings.from_settings(RunSettings.of(rate=7.0)) == PaceSettings(ceiling=7.0)
    assert PaceSettings.from_settings(RunSettings.of(pace=False)) is None
    paced = Pacing.from_settings(RunSettings.of(rate=7.0))
    assert paced.enabled
    assert not Pacing.from_settings(RunSettings.of(pace=False)).enabled
