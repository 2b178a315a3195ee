"""The run's stop request as the pool's units see it: set once, it ends every stoppable wait.

The pool decides *why* to stop (:mod:`orchestrator.engine.stop_rules`); admission, the
credential probes and the producer only need to know *that* a stop came, and to wait on
something in a way that a stop ends (:meth:`StopSignal.wait_or_stop` raises
:class:`~orchestrator.engine.limiters.Stopped`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio

from orchestrator.engine.limiters import Stopped

__all__ = ["StopSignal"]


class StopSignal:
    """A stop request and the waits it ends."""

    __slots__ = ("_event", "_waiting", "is_set")

    def __init__(self) -> None:
        self._event = anyio.Event()
        self._waiting: set[anyio.CancelScope] = set()
        # The event's own method: checked on every request's path, so no wrapper call.
        self.is_set: Callable[[], bool] = self._event.is_set

    def set(self) -> None:
        """Request the stop: every stoppable wait under way ends with ``Stopped``."""
        self._event.set()
        for scope in list(self._waiting):
            scope.cancel()

    async def wait(self) -> None:
        """Until the stop is requested."""
        await self._event.wait()

    def enter(self, scope: anyio.CancelScope) -> None:
        """Let a stop cancel ``scope`` (at once if the stop has come already)."""
        self._waiting.add(scope)
        if self._event.is_set():
            scope.cancel()

    def leave(self, scope: anyio.CancelScope) -> None:
        self._waiting.discard(scope)

    async def wait_or_stop(self, waiting: Awaitable[None]) -> None:
        """Await ``waiting``; a stop ends the wait with ``Stopped``."""
        with anyio.CancelScope() as scope:
            self.enter(scope)
            try:
                await waiting
            finally:
                self._waiting.discard(scope)
        if scope.cancelled_caught:
            raise Stopped
