"""What happened, for assertions and benchmarks (``GET /_sim/counters``)."""

from __future__ import annotations

from collections import Counter
from typing import Any

__all__ = ["Counters"]

Pair = tuple[str, str]


def _pairs(counter: Counter[Pair]) -> list[dict[str, Any]]:
    return [
        {"checkpoint_item_id": item, "destination_region": region, "count": count}
        for (item, region), count in sorted(counter.items())
    ]


class Counters:
    """Requests by (route, status); replications and rejected duplicates by (item, region);
    injected faults by kind. Plain counters: the event loop is the only writer."""

    __slots__ = ("duplicates", "faults", "replications", "requests")

    def __init__(self) -> None:
        self.requests: Counter[tuple[str, str]] = Counter()
        self.replications: Counter[Pair] = Counter()
        self.duplicates: Counter[Pair] = Counter()
        self.faults: Counter[str] = Counter()

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
        }
