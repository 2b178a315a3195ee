"""The waiting side of a rate controller: requests of one key go one at a time, in order.

The head of the queue sleeps until the next slot *at the rate of now* and takes it; the others
wait behind it on a FIFO lock. Booking every waiting request's slot in advance would fix the
spacing of hundreds of waiting workers at the rate of when they arrived (seconds ahead at a
slow start's 20 a second), however the rate changed meanwhile.

A request whose slot is free passes at once unless the head is asleep for its slot. Waiters
that were handed the lock but have not run yet do not stop it: each would find its own slot
due or sleep for the next, and making every newcomer queue behind them kept the queue alive
one wake-up per request for as long as requests came (every request of a run through the
lock, a loop trip each, with no slot ever waited for). The sleeping head is never overtaken.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio

from orchestrator.engine.pace import RateController

__all__ = ["PaceGate"]


class PaceGate:
    __slots__ = ("_inside", "_lock", "_sleep", "_sleeping", "controller")

    def __init__(
        self,
        controller: RateController,
        *,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self.controller = controller
        # fast_acquire: a free lock is taken without a trip through the event loop; whoever
        # takes it either sleeps for its slot (a checkpoint) or takes a free one at once.
        self._lock = anyio.Lock(fast_acquire=True)
        self._sleep = sleep
        self._sleeping = False  # the head waits for its slot
        self._inside = 0  # requests in wait(): the one holding the lock and those queued

    def try_pass(self) -> bool:
        """Pass now if the head is not asleep and a slot is free (no trip through the event
        loop)."""
        return not self._sleeping and self.controller.try_take()

    async def wait(self) -> None:
        """Wait for this request's slot; cancellable (a stop request) at any point."""
        self._inside += 1
        try:
            async with self._lock:
                controller = self.controller
                while (delay := controller.wait_time()) > 0:
                    # Re-read after the sleep: the rate may have changed (a cut, a probe step).
                    self._sleeping = True
                    try:
                        await self._sleep(delay)
                    finally:
                        self._sleeping = False
                controller.take(waiting=self._inside > 1)
        finally:
            self._inside -= 1
