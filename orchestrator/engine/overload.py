"""Overload control per destination region: an adaptive concurrency limit and a circuit breaker.

The service publishes no capacity, so each region's limit is learned (AIMD, as TCP does):

* every success adds ``1/limit`` (one slot per "window" of successes: additive increase);
* a 503, a timeout or a cut connection multiplies the limit by ``decrease_factor``
  (multiplicative decrease; a 429 does not: throttling is about the *rate*, which the pool's
  rate controller, ``engine/pace.py``, owns), at most
  once per window, where a window is ``limit`` completed requests since the last decrease. A
  burst of 503s that were all in flight together is one congestion signal, not fifty.
* the limit stays within ``[floor, ceiling]``.

The breaker pauses a region that answers only overload: after ``breaker_threshold`` overload
answers in a row it opens for ``open_s`` (doubling on each failed probe up to ``max_open_s``),
then lets exactly one probe through; a success closes it. Other regions are not affected.

What a run learned can be kept in a small JSON state file (``{"cn-east-2": 12, ...}``) so the
next night starts each region at its last limit instead of at the ceiling.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio
import orjson
import structlog

from orchestrator.atomic_file import replace_file

__all__ = ["GateSettings", "RegionGate", "load_learned_limits", "save_learned_limits"]

log = structlog.get_logger("orchestrator.engine.overload")


@dataclass(frozen=True, slots=True)
class GateSettings:
    ceiling: int
    floor: int = 1
    initial: int | None = None  # default: the ceiling (or what a state file learned)
    adaptive: bool = True
    decrease_factor: float = 0.7
    breaker_threshold: int = 25
    open_s: float = 1.0
    max_open_s: float = 60.0


class RegionGate:
    """Admission to one destination region: breaker first, then the adaptive limiter."""

    def __init__(self, region: str, settings: GateSettings, *, clock: Callable[[], float]) -> None:
        self.region = region
        self._settings = settings
        self._clock = clock
        start = settings.initial if settings.initial is not None else settings.ceiling
        self._limit = float(min(settings.ceiling, max(settings.floor, start)))
        self._limiter = anyio.CapacityLimiter(int(self._limit))
        self._since_decrease = int(self._limit)  # the first congestion signal acts at once
        self._overload_streak = 0
        self._open_until: float | None = None
        self._open_since: float | None = None
        self._open_s = settings.open_s
        self._probing = False
        self._changed = anyio.Event()
        #: (time, limit) at every change of the integer limit; for tests, logs and state files.
        self.history: list[tuple[float, int]] = [(clock(), int(self._limit))]
        self.breaker_trips = 0

    @property
    def limit(self) -> int:
        return int(self._limit)

    @property
    def is_open(self) -> bool:
        return self._open_until is not None

    @property
    def open_since(self) -> float | None:
        """When the breaker opened, if it has not closed since (failed probes keep it open)."""
        return self._open_since

    async def acquire(self) -> None:
        probe = await self._pass_breaker()
        try:
            await self._limiter.acquire()
        except BaseException:
            if probe and self._probing:
                self._probing = False  # cancelled before it went: let another waiter probe
                self._notify()
            raise

    def try_acquire(self) -> bool:
        """Take a slot now if the breaker is closed and one is free, else nothing (False).

        :meth:`acquire` yields to the event loop even when it need not wait; the pool's fast
        path takes every limit at once with this instead."""
        if self._open_until is not None:
            return False
        try:
            self._limiter.acquire_nowait()
        except anyio.WouldBlock:
            return False
        return True

    def release(self) -> None:
        self._limiter.release()

    async def _pass_breaker(self) -> bool:
        """Wait while the breaker is open; True if this task is to be the probe."""
        while self._open_until is not None:
            wait = self._open_until - self._clock()
            if wait > 0:
                with anyio.move_on_after(wait):
                    await self._changed.wait()
                continue
            if not self._probing:
                self._probing = True  # this task is the probe; the others wait for its answer
                return True
            await self._changed.wait()
        return False

    def on_success(self) -> None:
        self._overload_streak = 0
        self._since_decrease += 1
        if self._open_until is not None:
            self._close()
        if self._settings.adaptive and self._limit < self._settings.ceiling:
            self._set_limit(min(self._settings.ceiling, self._limit + 1.0 / self._limit))

    def on_overload(self) -> None:
        self._overload_streak += 1
        self._since_decrease += 1
        if self._probing or self._overload_streak >= self._settings.breaker_threshold:
            self._open()
        if not self._settings.adaptive or self._since_decrease < self._limit:
            return
        self._since_decrease = 0
        self._set_limit(max(self._settings.floor, self._limit * self._settings.decrease_factor))

    def on_other(self) -> None:
        """A final answer that says nothing about load (a 400, say): only counts the window."""
        self._since_decrease += 1
        if self._open_until is not None:
            self._close()  # any real answer shows the region is serving again

    def _set_limit(self, value: float) -> None:
        old = int(self._limit)
        self._limit = value
        if int(value) != old:
            self._limiter.total_tokens = max(1, int(value))
            self.history.append((self._clock(), int(value)))

    def _open(self) -> None:
        if self._open_since is None:
            self._open_since = self._clock()
        if self._probing:
            self._open_s = min(self._settings.max_open_s, self._open_s * 2)
        elif self._open_until is None:
            self.breaker_trips += 1
        self._open_until = self._clock() + self._open_s
        self._probing = False
        self._overload_streak = 0
        self._notify()

    def _close(self) -> None:
        self._open_until = None
        self._open_since = None
        self._open_s = self._settings.open_s
        self._probing = False
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()


def load_learned_limits(path: str | None) -> dict[str, int]:
    """The limits a previous run learned; an absent or unreadable file means none (a warning,
    not an error: the state is an optimisation, never a reason to skip a night)."""
    if path is None:
        return {}
    try:
        data = orjson.loads(Path(path).read_bytes())
    except FileNotFoundError:
        return {}
    except (OSError, orjson.JSONDecodeError) as exc:
        log.warning("limits.state_unreadable", path=path, error=str(exc))
        return {}
    if not isinstance(data, dict):
        log.warning("limits.state_unreadable", path=path, error="not a JSON object")
        return {}
    # bool is an int to Python, but ``true`` is no limit.
    return {
        str(k): v
        for k, v in data.items()
        if isinstance(v, int) and not isinstance(v, bool) and v > 0
    }


def save_learned_limits(
    path: str | None, history: Mapping[str, Sequence[tuple[float, int]]]
) -> None:
    """Keep each region's last limit, merged into what the file already holds; atomic."""
    if path is None or not history:
        return
    merged: dict[str, object] = dict(load_learned_limits(path))
    merged.update(_others(path))  # what other parts keep here (the learned paces)
    merged.update({region: points[-1][1] for region, points in history.items() if points})
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        replace_file(target, orjson.dumps(merged, option=orjson.OPT_SORT_KEYS))
    except OSError as exc:
        log.warning("limits.state_unwritable", path=path, error=str(exc))


def _others(path: str) -> dict[str, object]:
    """The entries of the state file that are not region limits (JSON objects), kept as is."""
    try:
        data = orjson.loads(Path(path).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): v for k, v in data.items() if isinstance(v, dict)}
