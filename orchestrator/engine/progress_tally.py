"""The counters a run's progress displays share: per destination region and in total, done,
failed, retries, the adaptive limit, the learned pace, and a rate over a sliding window.

Rate: pairs finished per second over the last ``window_s`` seconds (30 by default); ETA is what
is left divided by that rate.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Clock", "Counting", "Row", "Tally"]

Clock = Callable[[], float]
_FAILED = frozenset({"failed", "gave_up", "rejected"})


@dataclass(slots=True)
class Row:
    total: int = 0
    done: int = 0
    failed: int = 0
    retries: int = 0
    limit: int | None = None
    samples: deque[tuple[float, int]] = field(default_factory=deque)  # (time, done)
    rate: float | None = None

    def sample(self, now: float, window_s: float) -> None:
        samples = self.samples
        samples.append((now, self.done))
        # Keep one sample at or before the window's start, so the window is fully covered.
        while len(samples) > 2 and samples[1][0] <= now - window_s:
            samples.popleft()
        then, done_then = samples[0]
        self.rate = (self.done - done_then) / (now - then) if now > then else None

    @property
    def eta_s(self) -> float | None:
        left = max(self.total - self.done, 0)
        if left == 0:
            return 0.0
        return left / self.rate if self.rate else None

    def as_fields(self) -> dict[str, Any]:
        eta = self.eta_s
        return {
            "done": self.done,
            "total": max(self.total, self.done),
            "failed": self.failed,
            "retries": self.retries,
            "rate": None if self.rate is None else round(self.rate, 2),
            "eta_s": None if eta is None else round(eta),
            "limit": self.limit,
        }


class Tally:
    """The counters both displays share. The hot-path methods are dict lookups and adds."""

    def __init__(self, clock: Clock, window_s: float) -> None:
        self.clock = clock
        self.window_s = window_s
        self.regions: dict[str, Row] = {}
        self.total = Row()
        self.pace: dict[str, float | None] = {}
        self.started = clock()

    def start(self, total_by_region: Mapping[str, int]) -> None:
        now = self.started = self.clock()
        for region, total in total_by_region.items():
            self._row(region).total = total
        self.total.total = sum(row.total for row in self.regions.values())
        self.sample(now)

    def _row(self, region: str) -> Row:
        row = self.regions.get(region)
        if row is None:  # a region the plan did not announce: count it anyway
            row = self.regions[region] = Row()
        return row

    def advance(self, region: str, status: str) -> None:
        row = self._row(region)
        row.done += 1
        self.total.done += 1
        if status in _FAILED:
            row.failed += 1
            self.total.failed += 1

    def retry(self, region: str) -> None:
        self._row(region).retries += 1
        self.total.retries += 1

    def set_limit(self, region: str, limit: int) -> None:
        self._row(region).limit = limit

    def set_pace(self, key: str, rate: float | None) -> None:
        self.pace[key] = rate

    def pace_text(self) -> str:
        """``pace 97.0/s`` (the sum over keys), empty while nothing is paced."""
        paced = [r for r in self.pace.values() if r is not None]
        return f"pace {sum(paced):.1f}/s" if paced else ""

    def sample(self, now: float) -> None:
        for row in self.regions.values():
            row.sample(now, self.window_s)
        self.total.total = max(self.total.total, sum(r.total for r in self.regions.values()))
        self.total.sample(now, self.window_s)


class Counting:
    """The hot-path calls, shared by the displays: they only bump the tally's counters."""

    _tally: Tally

    def advance(self, region: str, status: str) -> None:
        self._tally.advance(region, status)

    def retry(self, region: str) -> None:
        self._tally.retry(region)

    def set_limit(self, region: str, limit: int) -> None:
        self._tally.set_limit(region, limit)

    def set_pace(self, key: str, rate: float | None) -> None:
        self._tally.set_pace(key, rate)
