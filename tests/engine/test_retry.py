"""The retry controller: what is retried, how long it waits, when it stops; the retry budget.

Nothing here sleeps: the controller gets a fake sleep that advances a fake clock.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import anyio
import pytest
import tenacity

from orchestrator.engine.retry import RetryBudget, RetryPolicy, retrying
from orchestrator.errors import (
    ConfigError,
    ErrorTable,
    PermanentApiError,
    TransientApiError,
    TransportError,
    throttle_window_s,
)
from orchestrator.service.classify import error_for_response, parse_retry_after


class FakeTime:
    """A clock that moves only when the controller 'sleeps'."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


async def _run(
    controller: tenacity.AsyncRetrying, attempt_fn: Callable[[int], Awaitable[str]]
) -> tuple[str, int]:
    """Drive ``attempt_fn`` through ``controller``; returns (result, attempts made)."""
    attempts = 0
    async for attempt in controller:
        with attempt:
            attempts += 1
            return await attempt_fn(attempts), attempts
    raise AssertionError("unreachable")


def _failing(
    exc_factory: Callable[[int], BaseException], succeed_at: int | None = None
) -> Callable[[int], Awaitable[str]]:
    async def attempt_fn(n: int) -> str:
        if succeed_at is not None and n >= succeed_at:
            return "ok"
        raise exc_factory(n)

    return attempt_fn


def _controller(
    time: FakeTime, policy: RetryPolicy | None = None, **kw: Any
) -> tenacity.AsyncRetrying:
    return retrying(
        policy or RetryPolicy(),
        sleep=time.sleep,
        clock=time.clock,
        rng=random.Random(7),
        **kw,
    )


@pytest.mark.anyio
async def test_transient_errors_are_retried_until_success() -> None:
    time = FakeTime()
    result, attempts = await _run(
        _controller(time), _failing(lambda n: TransientApiError(f"503 #{n}"), succeed_at=4)
    )
    assert (result, attempts) == ("ok", 4)
    assert len(time.sleeps) == 3


@pytest.mark.anyio
async def test_transport_errors_are_transient_too() -> None:
    time = FakeTime()
    result, attempts = await _run(
        _controller(time),
        _failing(lambda n: TransportError("cut", maybe_applied=True), succeed_at=2),
    )
    assert (result, attempts) == ("ok", 2)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "exc",
    [PermanentApiError("HTTP 400"), ValueError("a bug"), ConfigError("bad")],
)
async def test_other_errors_are_not_retried(exc: Exception) -> None:
    time = FakeTime()
    calls = 0

    async def attempt_fn(n: int) -> str:
        nonlocal calls
        calls += 1
        raise exc

    with pytest.raises(type(exc)) as caught:
        await _run(_controller(time), attempt_fn)
    assert caught.value is exc
    assert calls == 1
    assert time.sleeps == []


@pytest.mark.anyio
async def test_the_last_error_itself_is_raised_after_max_attempts() -> None:
    time = FakeTime()
    errors: list[TransientApiError] = []

    def make(n: int) -> TransientApiError:
        errors.append(TransientApiError(f"503 #{n}", http_status=503))
        return errors[-1]

    with pytest.raises(TransientApiError) as caught:
        await _run(_controller(time, RetryPolicy(max_attempts=5)), _failing(make))
    assert len(errors) == 5
    assert caught.value is errors[-1]
    assert len(time.sleeps) == 4


@pytest.mark.anyio
async def test_full_jitter_stays_within_the_exponential_ceiling() -> None:
    policy = RetryPolicy(max_attempts=12, base_delay_s=0.5, max_delay_s=4.0, max_elapsed_s=1e9)
    time = FakeTime()
    with pytest.raises(TransientApiError):
        await _run(_controller(time, policy), _failing(lambda n: TransientApiError("x")))
    ceilings = [min(4.0, 0.5 * 2**n) for n in range(11)]
    assert len(time.sleeps) == 11
    for wait, ceiling in zip(time.sleeps, ceilings, strict=True):
        assert 0.0 <= wait <= ceiling
    # Seeded: exactly the draws of the same generator.
    rng = random.Random(7)
    assert time.sleeps == pytest.approx([c * rng.random() for c in ceilings])


def test_backoff_exponent_does_not_overflow() -> None:
    policy = RetryPolicy(max_delay_s=30.0)
    assert policy.backoff(10_000, lambda: 1.0) == 30.0
    assert policy.backoff(1, lambda: 1.0) == 0.5


@pytest.mark.anyio
async def test_waits_are_at_least_the_servers_retry_after() -> None:
    time = FakeTime()
    policy = RetryPolicy(base_delay_s=0.01, max_delay_s=0.05)
    await _run(
        _controller(time, policy),
        _failing(lambda n: TransientApiError("429", retry_after=7.0), succeed_at=3),
    )
    assert time.sleeps == [7.0, 7.0]


@pytest.mark.anyio
async def test_retry_after_is_capped() -> None:
    time = FakeTime()
    policy = RetryPolicy(retry_after_cap_s=60.0, max_elapsed_s=1e9)
    await _run(
        _controller(time, policy),
        _failing(lambda n: TransientApiError("429", retry_after=3600.0), succeed_at=2),
    )
    assert time.sleeps == [60.0]


@pytest.mark.anyio
async def test_retry_after_as_an_http_date() -> None:
    now = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
    header = format_datetime(now + timedelta(seconds=12), usegmt=True)
    hint = parse_retry_after(header, cap_s=60.0, now=now)
    assert hint == 12.0
    time = FakeTime()
    policy = RetryPolicy(base_delay_s=0.01, max_delay_s=0.01)
    await _run(
        _controller(time, policy),
        _failing(lambda n: TransientApiError("503", retry_after=hint), succeed_at=2),
    )
    assert time.sleeps == [12.0]


@pytest.mark.anyio
async def test_stops_before_a_wait_would_cross_the_elapsed_limit() -> None:
    time = FakeTime()
    policy = RetryPolicy(max_attempts=100, max_elapsed_s=20.0, retry_after_cap_s=60.0)
    with pytest.raises(TransientApiError):
        await _run(
            _controller(time, policy),
            _failing(lambda n: TransientApiError("503", retry_after=6.0)),
        )
    # 6 + 6 + 6 = 18 s slept; a fourth wait would end at 24 s > 20 s: stop instead.
    assert time.sleeps == [6.0, 6.0, 6.0]


@pytest.mark.anyio
async def test_time_spent_in_attempts_counts_towards_the_limit() -> None:
    time = FakeTime()

    async def slow_failure(n: int) -> str:
        time.now += 9.0  # each attempt itself takes 9 s (e.g. a read timeout)
        raise TransientApiError("timeout")

    policy = RetryPolicy(max_attempts=100, max_elapsed_s=30.0, base_delay_s=0.0)
    with pytest.raises(TransientApiError):
        await _run(_controller(time, policy), slow_failure)
    assert len(time.sleeps) == 3  # attempts at 0, 9, 18, 27 s; then 36 s would be too late


@pytest.mark.anyio
async def test_before_sleep_sees_every_retry() -> None:
    time = FakeTime()
    seen: list[int] = []
    await _run(
        _controller(time, before_sleep=lambda state: seen.append(state.attempt_number)),
        _failing(lambda n: TransientApiError("503"), succeed_at=4),
    )
    assert seen == [1, 2, 3]


@pytest.mark.anyio
async def test_cancellation_is_never_retried() -> None:
    time = FakeTime()
    calls = 0

    async def hangs(n: int) -> str:
        nonlocal calls
        calls += 1
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    with anyio.CancelScope() as scope:
        scope.cancel()
        await _run(_controller(time), hangs)
    assert scope.cancelled_caught
    assert calls == 1
    assert time.sleeps == []


@pytest.mark.anyio
async def test_a_raised_cancelled_error_passes_straight_through() -> None:
    time = FakeTime()

    async def cancelled(n: int) -> str:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await _run(_controller(time), cancelled)
    assert time.sleeps == []


@pytest.mark.anyio
async def test_an_exhausted_budget_slows_retries_to_the_longest_backoff() -> None:
    time = FakeTime()
    policy = RetryPolicy(max_attempts=4, max_delay_s=30.0, max_elapsed_s=1000.0)
    budget = RetryBudget(0.0, min_per_s=0, clock=time.clock)
    budget.record_attempt(first=True)
    with pytest.raises(TransientApiError):
        await _run(
            _controller(time, policy, budget=budget), _failing(lambda n: TransientApiError("x"))
        )
    assert len(time.sleeps) == 3  # slowed, never dropped: every attempt still happens
    assert all(15.0 <= s <= 30.0 for s in time.sleeps)


@pytest.mark.anyio
async def test_the_budget_is_consulted_before_each_retry() -> None:
    policy = RetryPolicy(max_delay_s=30.0, base_delay_s=0.5, max_elapsed_s=10_000.0)
    time = FakeTime()
    budget = RetryBudget(0.0, min_per_s=0.2, clock=time.clock)  # 2 in the 10 s window

    async def attempt_fn(n: int) -> str:
        budget.record_attempt(first=n == 1)  # the caller records what it really sends
        raise TransientApiError("503")

    with pytest.raises(TransientApiError):
        await _run(_controller(time, policy, budget=budget), attempt_fn)
    # The two retries the budget allows back off from base_delay; the third waits the
    # longest, after which the 10 s window has moved on and allows two more.
    assert len(time.sleeps) == 7
    assert all(s <= 1.0 for s in time.sleeps[:2])
    assert 15.0 <= time.sleeps[2] <= 30.0
    assert time.sleeps[3] <= 4.0


# -- the budget alone --------------------------------------------------------------------------


def test_budget_allows_a_share_of_first_attempts() -> None:
    budget = RetryBudget(0.1, min_per_s=0, clock=FakeTime().clock)
    for _ in range(100):
        budget.record_attempt(first=True)
    allowed = 0
    while budget.can_retry():
        budget.record_attempt(first=False)
        allowed += 1
    assert allowed == 10
    assert budget.counts == (100, 10)


def test_budget_minimum_lets_a_quiet_run_retry() -> None:
    budget = RetryBudget(0.1, min_per_s=1.0, window_s=10, clock=FakeTime().clock)
    budget.record_attempt(first=True)
    for _ in range(10):  # 1 a second over the 10 s window
        assert budget.can_retry()
        budget.record_attempt(first=False)
    assert not budget.can_retry()


def test_budget_window_slides_in_time() -> None:
    time = FakeTime()
    budget = RetryBudget(0.5, min_per_s=0, window_s=10, clock=time.clock)
    for _ in range(4):
        budget.record_attempt(first=True)
    budget.record_attempt(first=False)
    budget.record_attempt(first=False)
    assert not budget.can_retry()  # 2 retries vs 0.5 * 4 firsts
    time.now += 5
    budget.record_attempt(first=True)
    assert budget.counts == (5, 2)
    time.now += 5  # the first second has left the window; the later first attempt has not
    assert budget.counts == (1, 0)
    assert budget.can_retry()
    time.now += 1000  # a long quiet stretch empties it
    assert budget.counts == (0, 0)


def test_the_first_attempts_of_the_last_seconds_pay_for_a_run_s_tail() -> None:
    """After the last first attempt, the pairs still retrying keep their normal backoff for
    as long as the recent first attempts cover them (a window of attempts would refuse)."""
    time = FakeTime()
    budget = RetryBudget(0.5, min_per_s=0, window_s=10, clock=time.clock)
    for _ in range(1000):
        budget.record_attempt(first=True)
    time.now += 3
    for _ in range(400):  # the tail: retries alone
        assert budget.can_retry()
        budget.record_attempt(first=False)
    assert budget.counts == (1000, 400)


def test_budget_and_policy_validate_their_settings() -> None:
    with pytest.raises(ConfigError):
        RetryBudget(-0.1)
    with pytest.raises(ConfigError):
        RetryBudget(0.1, window_s=0)
    with pytest.raises(ConfigError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ConfigError):
        RetryPolicy(base_delay_s=float("nan"))


# -- APIG.0308 names its window (issue 15) -----------------------------------------------------


@pytest.mark.parametrize(
    ("code", "msg", "window"),
    [
        ("APIG.0308", "policy user over ratelimit, limit:20, time:1 second", 1.0),
        ("APIGW.0308", "policy user over ratelimit, limit:200, time:1 minute", 60.0),
        ("APIG.0308", "... limit:5, TIME: 2 Seconds", 2.0),
        ("APIG.0308", "The throttling threshold has been reached", None),  # no window said
        ("CSBS.9999", "time:1 second", None),  # only the gateway's throttling code
        ("APIG.0308", "time:3 days", None),  # not a rate window worth waiting in a retry
        (None, None, None),
    ],
)
def test_the_throttling_window_is_read_from_the_message(
    code: str | None, msg: str | None, window: float | None
) -> None:
    assert throttle_window_s(code, msg) == window


@pytest.mark.anyio
async def test_a_throttled_retry_waits_for_the_next_window_with_jitter() -> None:
    """Without Retry-After, the first backoffs are sub-second: inside a 1 s window. Each
    retry waits at least the window, and not all the same (jitter)."""
    time = FakeTime()
    policy = RetryPolicy(base_delay_s=0.05, max_delay_s=30.0)
    await _run(
        _controller(time, policy),
        _failing(lambda n: TransientApiError("429", window_s=1.0), succeed_at=5),
    )
    assert len(time.sleeps) == 4
    assert all(1.0 <= s <= 1.25 for s in time.sleeps), time.sleeps
    assert len(set(time.sleeps)) == 4


def test_a_429_from_the_gateway_carries_its_window() -> None:
    body = (
        b'{"error_code":"APIG.0308","error_msg":"The throttling threshold has been reached: '
        b'policy user over ratelimit, limit:10, time:1 minute"}'
    )
    exc = error_for_response(429, body, {}, table=ErrorTable(), what="POST /x")
    assert isinstance(exc, TransientApiError)
    assert exc.window_s == 60.0
    assert exc.retry_after is None


@pytest.mark.anyio
async def test_the_window_wait_is_bounded_by_the_longest_backoff() -> None:
    time = FakeTime()
    policy = RetryPolicy(base_delay_s=0.001, max_delay_s=0.01)
    await _run(
        _controller(time, policy),
        _failing(lambda n: TransientApiError("429", window_s=60.0), succeed_at=2),
    )
    assert time.sleeps == [0.01]
