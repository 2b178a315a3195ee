"""Admission: the one step every request takes before it is sent.

In order: the pace of its endpoint and project (see :mod:`orchestrator.engine.pace`), the
region gate (breaker and adaptive limit, :mod:`orchestrator.engine.overload`), the global
concurrency limit, then the user's fixed rate. The pace comes first and holds nothing while
it waits: a project throttled to a slow rate must not hold concurrency slots that another
project's requests could use. What is free is taken without a trip through the event loop;
only the rest is waited for, and a stop ends those waits (unless the request is a follow-up
of one already answered).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import anyio

from orchestrator.engine.limiters import RateLimiter, Slots, Stopped
from orchestrator.engine.overload import GateSettings, RegionGate
from orchestrator.engine.pace import PaceKey, Pacer, RateController, key_of
from orchestrator.engine.pace_gate import PaceGate
from orchestrator.engine.pool_types import PoolSettings
from orchestrator.engine.stop_signal import StopSignal
from orchestrator.models import ReplicationTask

__all__ = ["Admission", "RegionDown", "loop_clock"]


def loop_clock() -> Callable[[], float]:
    """What ``anyio.current_time`` reads, without finding the async backend on every call
    (the pace reads the clock three times a request; each lookup cost more than the read):
    the running asyncio loop's own ``time`` (aiohttp ties a run to asyncio), or anyio's
    outside a loop."""
    try:
        return asyncio.get_running_loop().time
    except RuntimeError:
        return anyio.current_time


class RegionDown(Exception):
    """The region's breaker stayed open longer than a pair may wait; not sent."""


class Admission:
    """The limits a request passes, and :meth:`admit`, which passes them all."""

    def __init__(self, settings: PoolSettings, stop: StopSignal) -> None:
        self._settings = settings
        self._stop = stop
        self.slots = Slots(settings.concurrency)
        #: The run's monotonic clock (the event loop's): the pace, the limits, send times.
        self.clock = clock = loop_clock()
        self._rate = RateLimiter(settings.rate, clock)
        self.pacer = (
            None
            if settings.pace is None
            else Pacer(settings.pace, clock, initial=settings.initial_rates)
        )
        self._pace_gates: dict[PaceKey, PaceGate] = {}
        #: The region gates, by region (one per region the run opened).
        self.gates: dict[str, RegionGate] = {}

    def open_region(self, region: str) -> RegionGate:
        s = self._settings
        gate_settings = GateSettings(
            ceiling=s.per_region,
            floor=min(s.per_region_floor, s.per_region),
            initial=s.initial_limits.get(region),
            adaptive=s.adaptive,
        )
        gate = self.gates[region] = RegionGate(region, gate_settings, clock=self.clock)
        return gate

    def pace_summary(self) -> dict[str, dict[str, float | int | None]]:
        """The learned pace per ``endpoint/project`` so far (empty when not pacing)."""
        return {} if self.pacer is None else self.pacer.summary()

    def paced(self, task: ReplicationTask) -> RateController | None:
        """The task's rate controller (None when not pacing)."""
        return None if self.pacer is None else self.pacer[key_of(task)]

    async def admit(
        self, gate: RegionGate, task: ReplicationTask, *, stoppable: bool = True
    ) -> None:
        """Wait for the task's pace, then take the region gate, the global limiter and a rate
        slot; a stop ends the wait, unless not ``stoppable`` (a follow-up of a request already
        answered). The caller releases the gate and the slot once the request is answered."""
        if (pacer := self.pacer) is not None:
            pace = self._pace_gate(pacer, task)
            if not pace.try_pass():
                await self._pace_wait(pace, stoppable=stoppable)
        # What is free now is taken without a trip through the event loop (usually all three);
        # only the rest is waited for, in a cancel scope that a stop cancels.
        taken = 0 if stoppable and self._stop.is_set() else self._take_free(gate)
        if taken == 1:
            # The usual wait (more workers than global slots) needs no cancel scope: a stop
            # ends it through the slots themselves.
            try:
                await self.slots.take(stoppable=stoppable)
            except BaseException:
                gate.release()
                raise
            taken = 3 if self._rate.take_now() else 2
        if taken == 3:
            return
        held: list[Callable[[], None]] = [gate.release, self.slots.release][:taken]
        with anyio.CancelScope() as scope:
            if stoppable:
                self._stop.enter(scope)
            try:
                if taken < 1:
                    await self._pass_region(gate)
                    held.append(gate.release)
                if taken < 2:
                    await self.slots.take(stoppable=stoppable)
                    held.append(self.slots.release)
                await self._rate.wait()
                held.clear()
            finally:
                self._stop.leave(scope)
                for release in reversed(held):
                    release()
        if scope.cancelled_caught:
            raise Stopped

    async def _pace_wait(self, gate: PaceGate, *, stoppable: bool) -> None:
        if stoppable:
            await self._stop.wait_or_stop(gate.wait())
        else:
            await gate.wait()

    def _pace_gate(self, pacer: Pacer, task: ReplicationTask) -> PaceGate:
        key = key_of(task)
        gate = self._pace_gates.get(key)
        if gate is None:
            gate = self._pace_gates[key] = PaceGate(pacer[key])
        return gate

    def _take_free(self, gate: RegionGate) -> int:
        """How many of the three, in order (region gate, global limiter, rate slot), were free
        and are now held: each is taken only after the one before it."""
        if not gate.try_acquire():
            return 0
        if not self.slots.try_take():
            return 1
        return 3 if self._rate.take_now() else 2

    async def _pass_region(self, gate: RegionGate) -> None:
        """``gate.acquire()``, waiting at most the retry time for a breaker that stays open.

        Each failed probe doubles the breaker's wait and lets one pair through, so a region
        that is down would hold the run for hours; instead its pairs give up (resume later)
        once its breaker has been open longer than a pair may spend retrying."""
        patience = self._settings.retry.max_elapsed_s
        while (since := gate.open_since) is not None:
            left = since + patience - self.clock()
            if left <= 0:
                raise RegionDown
            with anyio.move_on_after(left):
                await gate.acquire()
                return
        await gate.acquire()
