"""The scheduler's clocks: the real one, a wall-clock sleep, and instant helpers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import anyio

__all__ = ["Clock", "SleepUntil", "require_aware", "sleep_until_wall", "stamp", "utc_now"]

Clock = Callable[[], datetime]
SleepUntil = Callable[[datetime], Awaitable[None]]


def utc_now() -> datetime:
    """The real clock: an aware UTC datetime."""
    return datetime.now(UTC)


async def sleep_until_wall(
    when: datetime, *, clock: Clock = utc_now, max_step_s: float = 60.0
) -> None:
    """Sleep until ``clock()`` reaches ``when``.

    Sleeps in steps of at most ``max_step_s`` and re-reads the clock between them: the
    event loop's monotonic clock stops during a system suspend and knows nothing of
    wall-clock corrections, so one long sleep could wake hours late.
    """
    # A loop of bounded sleeps is the point here (re-reading the wall clock), not polling.
    while (remaining := (when - clock()).total_seconds()) > 0:  # noqa: ASYNC110 - see above
        await anyio.sleep(min(remaining, max_step_s))


def require_aware(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got naive {value!r}")
    return value.astimezone(UTC)


def stamp(value: datetime) -> str:
    return f"{value.astimezone(UTC):%Y-%m-%dT%H:%MZ}"
