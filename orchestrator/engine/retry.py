"""When to try a failed call again, and how long to wait first.

* :class:`RetryPolicy`: attempts, elapsed-time limit and backoff bounds (a frozen record).
* :func:`retrying`: one tenacity controller per request. It retries only
  :class:`~orchestrator.errors.TransientApiError` (named explicitly, so cancellation and every
  other error pass straight through), waits full jitter ``U(0, min(cap, base * 2**n))`` but
  never less than the server's own (capped) ``Retry-After``, nor (after a gateway's
  ``APIG.0308`` naming its window, "time:1 second" or "time:1 minute") than that window plus
  up to a quarter of it in jitter (bounded by ``max_delay_s``): a retry inside the same window
  is refused again, and workers throttled together must not all come back at the window's
  first instant. It stops
  at the attempt limit or before a wait would cross the elapsed-time limit.
* :class:`RetryBudget`: the SRE rule that retries stay a small share of first attempts, so a
  struggling service is not buried under retries from every worker at once. A retry over
  budget is *slowed*, not dropped: it waits the longest backoff (``max_delay``, jittered
  between half and all of it). A batch must finish its pairs: dropping them at the budget
  would turn a storm at the start of a night into thousands of ``gave_up`` pairs within
  seconds, while slowing them holds workers back, which itself throttles the run.

A :class:`~orchestrator.errors.TransportError` with ``maybe_applied`` is retried too: the
caller's attempt function must reconcile (ask the service) before it re-sends a POST.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio
import tenacity

from orchestrator.config.settings import RunSettings
from orchestrator.errors import ConfigError, TransientApiError

__all__ = ["RetryBudget", "RetryPolicy", "hinted_delay", "next_window_delay", "retrying"]

# 2**62 seconds is past any cap; stops the float exponent from growing without bound.
_MAX_EXPONENT = 62


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounds for retrying one request. ``max_attempts`` counts the first attempt."""

    max_attempts: int = 8
    max_elapsed_s: float = 600.0
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0
    retry_after_cap_s: float = 60.0

    @classmethod
    def from_settings(cls, settings: RunSettings) -> RetryPolicy:
        """The policy ``--max-attempts``, ``--retry-time``, ``--retry-base`` and
        ``--retry-cap`` describe (the pool's and every listing's)."""
        return cls(
            max_attempts=settings.retry.max_attempts,
            max_elapsed_s=settings.retry.retry_time,
            base_delay_s=settings.retry.retry_base,
            max_delay_s=settings.retry.retry_cap,
        )

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigError(f"max_attempts must be at least 1, not {self.max_attempts}")
        for name in ("max_elapsed_s", "base_delay_s", "max_delay_s", "retry_after_cap_s"):
            if not getattr(self, name) >= 0:  # also refuses NaN
                raise ConfigError(f"{name} must be a non-negative number")

    def backoff(self, attempt: int, rng: Callable[[], float]) -> float:
        """Full jitter after the ``attempt``-th failure (1-based): ``U(0, min(cap, base*2**n))``."""
        ceiling = min(self.max_delay_s, self.base_delay_s * 2.0 ** min(attempt - 1, _MAX_EXPONENT))
        return ceiling * rng()


def next_window_delay(window_s: float, rng: Callable[[], float]) -> float:
    """A wait that lands in the throttling window after the current one: where the current
    window started is unknown, so a whole window, plus up to a quarter more as jitter."""
    return window_s * (1.0 + 0.25 * rng())


def hinted_delay(
    policy: RetryPolicy, exc: BaseException | None, delay: float, rng: Callable[[], float]
) -> float:
    """``delay`` raised to what the server's answer asks: its (capped) ``Retry-After``, and
    the next throttling window it named."""
    if not isinstance(exc, TransientApiError):
        return delay
    if exc.retry_after is not None:
        delay = max(delay, min(exc.retry_after, policy.retry_after_cap_s))
    if exc.window_s is not None:
        # The window is our reading of the message, not an instruction like Retry-After:
        # the operator's longest backoff (--retry-cap) bounds it.
        delay = max(delay, min(next_window_delay(exc.window_s, rng), policy.max_delay_s))
    return delay


class RetryBudget:
    """Retries may be at most ``ratio`` of the first attempts of the last ``window_s``
    seconds, but ``min_per_s`` retries a second are always allowed. Shared by all workers of
    a run; every operation is O(1) (amortized over the seconds that pass).

    The window is in seconds, not attempts: at the end of a run no first attempts come any
    more, and a window of the last N attempts then fills with retries alone, so every pair
    still retrying would be slowed to the longest backoff, round after round (a 6,000-pair
    run at 30 % 503s took 99 s instead of about 25). Counted in time, the first attempts of
    the last seconds still pay for the tail, and the floor keeps a quiet run retrying.

    The caller records each request it really sends (:meth:`record_attempt`), since only it
    knows whether an attempt reached the wire; :func:`retrying` only asks :meth:`can_retry`.
    """

    __slots__ = ("_clock", "_firsts", "_floor", "_now", "_ratio", "_retries", "_ring")

    def __init__(
        self,
        ratio: float = 0.1,
        *,
        min_per_s: float = 10.0,
        window_s: int = 10,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not ratio >= 0 or window_s < 1 or not min_per_s >= 0:
            raise ConfigError("retry budget: ratio and min_per_s >= 0, window_s >= 1")
        self._ratio = ratio
        self._floor = min_per_s * window_s
        self._ring = [[0, 0] for _ in range(window_s)]  # per second: [firsts, retries]
        self._clock = clock
        self._now = int(clock())
        self._firsts = 0
        self._retries = 0

    def _current(self) -> list[int]:
        """This second's counts, after dropping the seconds that left the window."""
        now = int(self._clock())
        ring = self._ring
        if now != self._now:
            for second in range(max(self._now + 1, now - len(ring) + 1), now + 1):
                stale = ring[second % len(ring)]
                self._firsts -= stale[0]
                self._retries -= stale[1]
                stale[0] = stale[1] = 0
            self._now = now
        return ring[now % len(ring)]

    def record_attempt(self, first: bool) -> None:
        counts = self._current()
        if first:
            counts[0] += 1
            self._firsts += 1
        else:
            counts[1] += 1
            self._retries += 1

    def can_retry(self) -> bool:
        self._current()
        return self._retries < max(self._floor, self._ratio * self._firsts)

    @property
    def counts(self) -> tuple[int, int]:
        """(first attempts, retries) in the window, for progress and logs."""
        self._current()
        return self._firsts, self._retries


class _Controller:
    """The per-request state behind one tenacity controller: when it started, the budget."""

    __slots__ = ("_budget", "_clock", "_policy", "_rng", "_start", "_started")

    def __init__(
        self,
        policy: RetryPolicy,
        budget: RetryBudget | None,
        rng: Callable[[], float],
        clock: Callable[[], float],
        started: float | None = None,
    ) -> None:
        self._policy = policy
        self._budget = budget
        self._rng = rng
        self._clock = clock
        self._start = 0.0
        self._started = started  # set: the caller made the first attempt (see retrying)

    def before(self, state: tenacity.RetryCallState) -> None:
        if state.attempt_number == 1:
            self._start = self._clock() if self._started is None else self._started

    def wait(self, state: tenacity.RetryCallState) -> float:
        if self._budget is not None and not self._budget.can_retry():
            delay = self._policy.max_delay_s * (0.5 + 0.5 * self._rng())
        else:
            delay = self._policy.backoff(state.attempt_number, self._rng)
        exc = state.outcome.exception() if state.outcome else None
        return hinted_delay(self._policy, exc, delay, self._rng)

    def stop(self, state: tenacity.RetryCallState) -> bool:
        policy = self._policy
        if state.attempt_number >= policy.max_attempts:
            return True
        return self._clock() - self._start + state.upcoming_sleep >= policy.max_elapsed_s


def retrying(
    policy: RetryPolicy,
    *,
    budget: RetryBudget | None = None,
    sleep: Callable[[float], Awaitable[None]] | None = None,
    rng: random.Random | None = None,
    before_sleep: Callable[[tenacity.RetryCallState], Awaitable[None] | None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    started: float | None = None,
) -> tenacity.AsyncRetrying:
    """A fresh controller for ONE request (never share it between tasks).

    Use as ``async for attempt in retrying(...): with attempt: ...``; the last error is
    re-raised as itself once retries end. With a ``budget``, a retry started while
    ``budget.can_retry()`` is false waits the longest backoff (the caller records attempts
    into it). ``sleep`` and
    ``clock`` are injectable so tests never wait; ``clock`` must advance when ``sleep`` does.

    ``started`` (a ``clock`` reading) is for a caller that made the first attempt itself and
    builds a controller only once it failed (most first attempts succeed, and a controller
    costs more than the request's own bookkeeping): the elapsed-time limit then counts from
    that first attempt, as if the controller had made it.
    """
    controller = _Controller(
        policy, budget, rng.random if rng is not None else random.random, clock, started
    )
    return tenacity.AsyncRetrying(
        sleep=sleep or anyio.sleep,
        retry=tenacity.retry_if_exception_type(TransientApiError),
        wait=controller.wait,
        stop=controller.stop,
        before=controller.before,
        before_sleep=before_sleep,
        reraise=True,
    )
