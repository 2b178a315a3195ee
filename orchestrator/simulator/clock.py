"""Simulated time. Replication progress, token expiry and AK/SK lockout follow a
:class:`Clock`; tests inject a :class:`ManualClock`, the CLI a :class:`ScaledClock`."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

__all__ = ["DEFAULT_EPOCH", "AdvancingClock", "Clock", "ManualClock", "ScaledClock"]

#: 2025-01-01T00:00:00Z: the start of a :class:`ManualClock`, after every generated backup.
DEFAULT_EPOCH = 1_735_689_600.0


class Clock(Protocol):
    def now(self) -> float:
        """Simulated seconds since the Unix epoch."""
        ...


class ManualClock:
    """Stands still until told to move: deterministic tests."""

    __slots__ = ("_now",)

    def __init__(self, start: float = DEFAULT_EPOCH) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds


class ScaledClock:
    """Real time from start, running ``scale`` times faster (a run of hours in minutes)."""

    __slots__ = ("_mono", "_mono0", "_scale", "_wall0")

    def __init__(
        self,
        scale: float = 1.0,
        *,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._scale = scale
        self._wall0 = wall()
        self._mono = monotonic
        self._mono0 = monotonic()

    def now(self) -> float:
        return self._wall0 + (self._mono() - self._mono0) * self._scale


class AdvancingClock:
    """Any clock plus an offset, so ``POST /_sim/advance`` works whatever clock was given."""

    __slots__ = ("_base", "_offset")

    def __init__(self, base: Clock) -> None:
        self._base = base
        self._offset = 0.0

    def now(self) -> float:
        return self._base.now() + self._offset

    def advance(self, seconds: float) -> None:
        self._offset += seconds
