"""Progress of a run: live rows on a terminal, periodic ``run.progress`` events elsewhere.

The pool calls :meth:`Progress.advance`, :meth:`~Progress.retry` and
:meth:`~Progress.set_limit` on its hot path: they only bump counters (no I/O, no lock, well
under a microsecond). Output happens in :meth:`~Progress.tick`, which the job calls a few times a
second from a task of its task group (:func:`run_ticks`); there is no thread.

* On a terminal (:class:`~orchestrator.engine.progress_rich.RichProgress`): one rich row
  per destination region and a total row, with done/total, rate, retries, failures, the
  adaptive limit and an ETA, redrawn at most 4 times a second.
* Elsewhere (:class:`~orchestrator.engine.progress_log.LogProgress`): one ``run.progress``
  event every ``interval_s`` seconds (and a last one on close), with totals and a
  ``regions`` map::

      {"event": "run.progress", "done": 120, "total": 400, "rate": 3.9, "eta_s": 72, ...,
       "regions": {"cn-east-2": {"done": 60, "total": 200, "rate": 1.9, "eta_s": 73, ...}}}

Never both on one stream. The CLI makes a single ``Console(stderr=True)``; when it is a terminal
and the log format is not forced to JSON, it passes that console to both
``logs.configure_logging(console=...)`` and :func:`make_progress`: log lines are then printed
through the console, which draws them above the live rows. Otherwise logs go to stderr as JSON
and progress is reported as log events.

The counters live in :mod:`~orchestrator.engine.progress_tally` (where the rate and ETA are
defined), the two displays in :mod:`~orchestrator.engine.progress_rich` and
:mod:`~orchestrator.engine.progress_log`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

import anyio
import structlog
from rich.console import Console
from structlog.typing import FilteringBoundLogger

from orchestrator.engine.progress_log import LogProgress
from orchestrator.engine.progress_rich import RichProgress
from orchestrator.engine.progress_tally import Clock

__all__ = ["NullProgress", "Progress", "make_progress", "run_ticks"]


class Progress(Protocol):
    """What the pool and the job call."""

    def start(self, total_by_region: Mapping[str, int]) -> None: ...

    def advance(self, region: str, status: str) -> None: ...

    def retry(self, region: str) -> None: ...

    def set_limit(self, region: str, limit: int) -> None: ...

    def set_pace(self, key: str, rate: float | None) -> None:
        """The learned pace of one ``endpoint/project`` (requests/s; None: unpaced)."""

    def tick(self) -> None: ...

    def close(self) -> None: ...


class NullProgress:
    """Reports nothing (``--quiet``, tests)."""

    def start(self, total_by_region: Mapping[str, int]) -> None:
        pass

    def advance(self, region: str, status: str) -> None:
        pass

    def retry(self, region: str) -> None:
        pass

    def set_limit(self, region: str, limit: int) -> None:
        pass

    def set_pace(self, key: str, rate: float | None) -> None:
        pass

    def tick(self) -> None:
        pass

    def close(self) -> None:
        pass


def make_progress(
    stream_is_tty: bool,
    *,
    console: Console | None = None,
    log: FilteringBoundLogger | None = None,
    clock: Clock = time.monotonic,
    interval_s: float = 30.0,
) -> Progress:
    """A rich display on a terminal, ``run.progress`` log events otherwise.

    Pass ``stream_is_tty=False`` when logs are forced to JSON on a terminal: progress then goes
    to the log too, and the two never share the terminal.
    """
    if stream_is_tty:
        return RichProgress(console or Console(stderr=True), clock=clock)
    logger = log if log is not None else structlog.get_logger("orchestrator.engine.progress")
    return LogProgress(logger, interval_s=interval_s, clock=clock)


async def run_ticks(
    progress: Progress,
    *,
    interval_s: float = 0.25,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
) -> None:
    """Call ``progress.tick()`` every ``interval_s`` until cancelled: start it in the job's task
    group next to the pool and cancel it when the pool returns, then call ``close()``."""
    while True:
        progress.tick()
        await sleep(interval_s)
