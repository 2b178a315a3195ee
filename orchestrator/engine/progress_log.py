"""Progress off a terminal: a ``run.progress`` log event every ``interval_s`` seconds, and a
last one on close, with totals and a ``regions`` map (see :mod:`orchestrator.engine.progress`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from structlog.typing import FilteringBoundLogger

from orchestrator.engine.progress_tally import Clock, Counting, Tally

__all__ = ["LogProgress"]


class LogProgress(Counting):
    """``run.progress`` log events every ``interval_s`` seconds of ``clock`` time."""

    def __init__(
        self,
        log: FilteringBoundLogger,
        *,
        interval_s: float = 30.0,
        clock: Clock = time.monotonic,
        window_s: float = 30.0,
    ) -> None:
        self._log = log
        self._interval_s = interval_s
        self._tally = Tally(clock, window_s)
        self._last_emit = self._tally.started
        self._closed = False

    def start(self, total_by_region: Mapping[str, int]) -> None:
        self._tally.start(total_by_region)
        self._last_emit = self._tally.started

    def tick(self) -> None:
        now = self._tally.clock()
        if now - self._last_emit < self._interval_s or self._closed:
            return
        self._last_emit = now
        self._emit(now, final=False)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._emit(self._tally.clock(), final=True)

    def _emit(self, now: float, *, final: bool) -> None:
        tally = self._tally
        tally.sample(now)
        fields = tally.total.as_fields()
        del fields["limit"]
        self._log.info(
            "run.progress",
            **fields,
            elapsed_s=round(now - tally.started, 1),
            final=final,
            regions={region: row.as_fields() for region, row in sorted(tally.regions.items())},
            **({"pace": dict(sorted(tally.pace.items()))} if tally.pace else {}),
        )
