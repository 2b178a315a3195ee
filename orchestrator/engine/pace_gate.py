"""The waiting side of a rate controller: requests of one key go one at a time, in order.

The head of the queue sleeps until the next slot *at the rate of now* and takes it; the others
wait behind it on a FIFO lock. Booking every waiting request's slot in advance would fix the
spacing of hundreds of waiting workers at the rate of when they arrived (seconds ahead at a
slow start's 20 a second), however the rate changed meanwhile.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio

from orchestrator.engine.pace import RateController

__all__ = ["PaceGate"]


class PaceGate:
    __slots__ = ("_lock", "_sleep", "controller")

    def __init__(
        self,
        controller: RateController,
        *,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self.controller = controller
        self._lock = anyio.Lock()
        self._sleep = sleep

    def try_pass(self) -> bool:
        """Pass now if nobody waits and a slot is free (no trip through the event loop)."""
        return not self._lock.locked() and self.controller.try_take()

    async def wait(self) -> None:
        """Wait for this request's slot; cancellable (a stop request) at any point."""
        async with self._lock:
            controller = self.controller
            while (delay := controller.wait_time()) > 0:
                # Re-read after the sleep: the rate may have changed (a cut, a probe step).
                await self._sleep(delay)
            controller.take(waiting=self._lock.statistics().tasks_waiting > 0)
