"""One pair's retries after its first attempt failed with a transient error: the backoff
(cut short by a stop), the run's retry budget, and the note of each retry.

The first attempt goes without a retry controller (most succeed, and a controller costs more
than the rest of a request's bookkeeping); its failure is replayed here as the controller's
attempt 1, started when it really was.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import anyio
import structlog

from orchestrator.engine.attempt import Attempt
from orchestrator.engine.limiters import Stopped
from orchestrator.engine.retry import RetryBudget, RetryPolicy, retrying
from orchestrator.engine.stop_signal import StopSignal
from orchestrator.errors import TransientApiError
from orchestrator.models import Outcome

if TYPE_CHECKING:
    from tenacity import RetryCallState

__all__ = ["PairRetries"]

log = structlog.get_logger("orchestrator.engine.pool")


class PairRetries:
    """Retries one pair's request under the policy and the budget until a stop."""

    def __init__(
        self,
        policy: RetryPolicy,
        budget: RetryBudget,
        stop: StopSignal,
        *,
        rng: random.Random,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        self._policy = policy
        self._budget = budget
        self._stop = stop
        self._rng = rng
        self._sleep = sleep

    async def retry(
        self,
        attempt: Attempt,
        first: TransientApiError,
        started: float,
        one_try: Callable[[], Awaitable[Outcome]],
    ) -> Outcome:
        """Retry ``one_try`` after its ``first`` failure (at monotonic time ``started``)."""
        controller = retrying(
            self._policy,
            sleep=self._backoff_sleep,
            rng=self._rng,
            budget=self._budget,
            before_sleep=lambda state: _note_retry(attempt, state),
            started=started,
        )
        replay: TransientApiError | None = first
        async for try_ in controller:
            with try_:
                if replay is not None:
                    failed, replay = replay, None
                    raise failed
                return await one_try()
        raise AssertionError("unreachable: the retry controller re-raises")  # pragma: no cover

    async def _backoff_sleep(self, seconds: float) -> None:
        if self._sleep is not None:
            await self._sleep(seconds)
        else:
            with anyio.move_on_after(seconds):
                await self._stop.wait()
        if self._stop.is_set():
            raise Stopped


def _note_retry(attempt: Attempt, state: RetryCallState) -> None:
    task = attempt.task
    exc = state.outcome.exception() if state.outcome is not None else None
    if isinstance(exc, TransientApiError):
        attempt.last_error = exc
    # Debug: a storm retries a third of all requests; the progress events count them.
    log.debug(
        "replicate.retry",
        item=task.checkpoint_item_id,
        region=task.destination_region,
        attempt=state.attempt_number,
        wait_s=round(state.upcoming_sleep, 3),
        http_status=getattr(exc, "http_status", None),
        error_code=getattr(exc, "error_code", None),
        error=str(exc),
    )
