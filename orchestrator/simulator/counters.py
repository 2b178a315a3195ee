"""What happened, for assertions and benchmarks (``GET /_sim/counters``)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

__all__ = ["Counters"]

Pair = tuple[str, str]


def _pairs(counter: Counter[Pair]) -> list[dict[str, Any]]:
    return [
        {"checkpoint_item_id": item, "destination_region": region, "count": count}
        for (item, region), count in sorted(counter.items())
    ]


#: Width of one bin of the replicate arrival histogram; ten bins make a sliding second.
ARRIVAL_BIN_S = 0.1
_BINS_PER_SECOND = round(1 / ARRIVAL_BIN_S)


class Counters:
    """Requests by (route, status); replications and rejected duplicates by (item, region);
    injected faults by kind; replicate arrivals per 100 ms (for rate checks). Plain counters:
    the event loop is the only writer."""

    __slots__ = ("_clock", "arrivals", "duplicates", "faults", "replications", "requests")

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.requests: Counter[tuple[str, str]] = Counter()
        self.replications: Counter[Pair] = Counter()
        self.duplicates: Counter[Pair] = Counter()
        self.faults: Counter[str] = Counter()
        self.arrivals: Counter[int] = Counter()
        """Replicate requests by arrival bin (``int(clock() / ARRIVAL_BIN_S)``), before any
        latency, auth or fault: what a client's rate limiter is judged by."""
        self._clock = clock

    def arrived(self) -> None:
        """Count one replicate request arriving now (one dict increment: cheap per request)."""
        self.arrivals[int(self._clock() * _BINS_PER_SECOND)] += 1

    def max_arrivals_per_second(self) -> int:
        """The most replicate arrivals in any sliding one-second window (ten bins)."""
        if not self.arrivals:
            return 0
        first, last = min(self.arrivals), max(self.arrivals)
        bins = [self.arrivals.get(b, 0) for b in range(first, last + 1)]
        window = sum(bins[:_BINS_PER_SECOND])
        best = window
        for i in range(_BINS_PER_SECOND, len(bins)):
            window += bins[i] - bins[i - _BINS_PER_SECOND]
            best = max(best, window)
        return best

    def arrival_histogram(self) -> list[int]:
        """Arrivals per bin, from the first bin with one to the last (empty bins as 0)."""
        if not self.arrivals:
            return []
        first, last = min(self.arrivals), max(self.arrivals)
        return [self.arrivals.get(b, 0) for b in range(first, last + 1)]

    def request(self, route: str, status: int | str) -> None:
        self.requests[(route, str(status))] += 1

    def requests_for(self, route: str, status: int | str) -> int:
        return self.requests[(route, str(status))]

    def replicated(self, item_id: str, region: str) -> None:
        self.replications[(item_id, region)] += 1

    def duplicate(self, item_id: str, region: str) -> None:
        self.duplicates[(item_id, region)] += 1

    def fault(self, kind: str) -> None:
        self.faults[kind] += 1

    def snapshot(self) -> dict[str, Any]:
        requests: dict[str, dict[str, int]] = {}
        for (route, status), count in sorted(self.requests.items()):
            requests.setdefault(route, {})[status] = count
        return {
            "requests": requests,
            "replications": {
                "total": self.replications.total(),
                "max_per_pair": max(self.replications.values(), default=0),
                "by_pair": _pairs(self.replications),
            },
            "duplicates_rejected": {
                "total": self.duplicates.total(),
                "by_pair": _pairs(self.duplicates),
            },
            "faults": dict(sorted(self.faults.items())),
            "replicate_arrivals": {
                "bin_s": ARRIVAL_BIN_S,
                "max_per_second": self.max_arrivals_per_second(),
                "bins": self.arrival_histogram(),
                # The first bin's index: bins[0] began at first_bin * bin_s on the
                # simulator's monotonic clock (for plots against other events).
                "first_bin": min(self.arrivals) if self.arrivals else None,
            },
        }
