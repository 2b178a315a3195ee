"""The pool's two simplest gates, as small units with an injectable clock.

* :class:`Slots`: the global concurrency limit, a FIFO semaphore whose waits a stop ends.
* :class:`RateLimiter`: evenly spaced admissions at a fixed rate (the user's ``--rate``).

The per-region gate (breaker and adaptive limit) is :mod:`orchestrator.engine.overload`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

import anyio

__all__ = ["RateLimiter", "Slots", "Stopped"]


class Stopped(Exception):
    """A stop request ended a wait before anything was sent."""


class RateLimiter:
    """Evenly spaced admissions: no one-second window holds more than ``rate`` + 1 requests."""

    def __init__(self, rate: float, clock: Callable[[], float]) -> None:
        self._interval = 1.0 / rate if rate > 0 else 0.0
        self._clock = clock
        self._next = 0.0

    def take_now(self) -> bool:
        """Take a slot if one is due now (what :meth:`wait` would do without sleeping)."""
        if not self._interval:
            return True
        now = self._clock()
        if self._next > now:
            return False
        self._next = now + self._interval
        return True

    async def wait(self) -> None:
        if not self._interval:
            return
        now = self._clock()
        slot = max(now, self._next)
        self._next = slot + self._interval
        if slot > now:
            await anyio.sleep(slot - now)


class Slots:
    """The global concurrency limit: a FIFO semaphore whose waits a stop request ends.

    What an anyio ``CapacityLimiter`` waited on in a cancel scope did, for much less: every
    region has ``per_region`` workers, so with several regions most requests wait here once
    and this wait is on every request's path. A freed slot goes straight to the first waiter.
    Each waiter is a bare asyncio future rather than an anyio ``Event`` (a backend lookup and
    an inner ``asyncio.Event`` with its own future): under callgrind the hand-off was ~5 % of
    a request's instructions. aiohttp ties the run to asyncio anyway.
    """

    def __init__(self, total: int) -> None:
        self._free = total
        self._waiters: deque[_Waiter] = deque()

    def try_take(self) -> bool:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return True
        return False

    async def take(self, *, stoppable: bool) -> None:
        """Wait for a slot; :class:`Stopped` if ``stoppable`` and :meth:`stop_waiting` came
        first."""
        if self.try_take():
            return
        waiter = _Waiter(stoppable, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        try:
            await waiter.woken
        except BaseException:
            if waiter.granted:
                self.release()  # handed a slot it will not use: pass it on
            elif waiter in self._waiters:  # (a stop may have taken it out already)
                self._waiters.remove(waiter)
            raise
        if not waiter.granted:
            raise Stopped

    def release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.woken.done():  # (done: its task was cancelled; it will not take it)
                waiter.granted = True
                waiter.woken.set_result(None)
                return
        self._free += 1

    def stop_waiting(self) -> None:
        """End every stoppable wait (without a slot)."""
        for waiter in [w for w in self._waiters if w.stoppable]:
            self._waiters.remove(waiter)
            if not waiter.woken.done():
                waiter.woken.set_result(None)


class _Waiter:
    __slots__ = ("granted", "stoppable", "woken")

    def __init__(self, stoppable: bool, woken: asyncio.Future[None]) -> None:
        self.stoppable = stoppable
        self.granted = False
        self.woken = woken
