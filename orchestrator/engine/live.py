"""What a running job shows while it runs: a snapshot a watcher (the live metrics file) reads.

Taken from the pool's counters in the event loop, in microseconds: no I/O here."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["RunSnapshot", "Watcher"]


@dataclass(frozen=True, slots=True)
class RunSnapshot:
    #: Pairs with a final result so far, by status.
    counts: Mapping[str, int] = field(default_factory=dict)
    #: Pairs this run is to send (the plan's total).
    total: int = 0
    requests: int = 0
    retries: int = 0
    #: Per ``endpoint/project``: limit, rate, accepted, throttled (see ``Pacer.summary``).
    pace: Mapping[str, Mapping[str, float | int | None]] = field(default_factory=dict)

    @property
    def done(self) -> int:
        return sum(self.counts.values())


#: Started beside the pool with a way to take snapshots; cancelled when the pool returns.
Watcher = Callable[[Callable[[], RunSnapshot]], Coroutine[Any, Any, None]]
