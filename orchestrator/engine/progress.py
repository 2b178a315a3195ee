"""Progress of a run: live rows on a terminal, periodic ``run.progress`` events elsewhere.

The pool calls :meth:`Progress.advance`, :meth:`~Progress.retry` and
:meth:`~Progress.set_limit` on its hot path: they only bump counters (no I/O, no lock, well
under a microsecond). Output happens in :meth:`~Progress.tick`, which the job calls a few times a
second from a task of its task group (:func:`run_ticks`); there is no thread.

* On a terminal (:class:`RichProgress`): one rich row per destination region and a total row,
  with done/total, rate, retries, failures, the adaptive limit and an ETA, redrawn at most
  4 times a second.
* Elsewhere (:class:`LogProgress`): one ``run.progress`` event every ``interval_s`` seconds
  (and a last one on close), with totals and a ``regions`` map::

      {"event": "run.progress", "done": 120, "total": 400, "rate": 3.9, "eta_s": 72, ...,
       "regions": {"cn-east-2": {"done": 60, "total": 200, "rate": 1.9, "eta_s": 73, ...}}}

Never both on one stream. The CLI makes a single ``Console(stderr=True)``; when it is a terminal
and the log format is not forced to JSON, it passes that console to both
``logs.configure_logging(console=...)`` and :func:`make_progress`: log lines are then printed
through the console, which draws them above the live rows. Otherwise logs go to stderr as JSON
and progress is reported as log events.

Rate: pairs finished per second over the last ``window_s`` seconds (30 by default); ETA is what
is left divided by that rate.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio
import structlog
from rich import progress as rich_progress
from rich.console import Console
from structlog.typing import FilteringBoundLogger

__all__ = [
    "LogProgress",
    "NullProgress",
    "Progress",
    "RichProgress",
    "make_progress",
    "run_ticks",
]

Clock = Callable[[], float]
_FAILED = frozenset({"failed", "gave_up", "rejected"})
_TOTAL = "total"


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


@dataclass(slots=True)
class _Row:
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


class _Tally:
    """The counters both displays share. The hot-path methods are dict lookups and adds."""

    def __init__(self, clock: Clock, window_s: float) -> None:
        self.clock = clock
        self.window_s = window_s
        self.regions: dict[str, _Row] = {}
        self.total = _Row()
        self.pace: dict[str, float | None] = {}
        self.started = clock()

    def start(self, total_by_region: Mapping[str, int]) -> None:
        now = self.started = self.clock()
        for region, total in total_by_region.items():
            self._row(region).total = total
        self.total.total = sum(row.total for row in self.regions.values())
        self.sample(now)

    def _row(self, region: str) -> _Row:
        row = self.regions.get(region)
        if row is None:  # a region the plan did not announce: count it anyway
            row = self.regions[region] = _Row()
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


class _Counting:
    """The hot-path calls, shared by the displays: they only bump the tally's counters."""

    _tally: _Tally

    def advance(self, region: str, status: str) -> None:
        self._tally.advance(region, status)

    def retry(self, region: str) -> None:
        self._tally.retry(region)

    def set_limit(self, region: str, limit: int) -> None:
        self._tally.set_limit(region, limit)

    def set_pace(self, key: str, rate: float | None) -> None:
        self._tally.set_pace(key, rate)


class LogProgress(_Counting):
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
        self._tally = _Tally(clock, window_s)
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


def _eta_text(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class RichProgress(_Counting):
    """Live rows on a terminal console, redrawn from :meth:`tick` at most 4 times a second."""

    def __init__(
        self,
        console: Console,
        *,
        clock: Clock = time.monotonic,
        window_s: float = 30.0,
        refresh_s: float = 0.25,
    ) -> None:
        self._tally = _Tally(clock, window_s)
        self._refresh_s = refresh_s
        self._last_refresh: float | None = None
        self._tasks: dict[str, rich_progress.TaskID] = {}
        self._display = rich_progress.Progress(
            rich_progress.TextColumn("{task.description}"),
            rich_progress.BarColumn(bar_width=20),
            rich_progress.MofNCompleteColumn(),
            rich_progress.TextColumn("{task.fields[rate]}"),
            rich_progress.TextColumn("retries {task.fields[retries]}"),
            rich_progress.TextColumn("failed {task.fields[failed]}"),
            rich_progress.TextColumn("{task.fields[limit]}"),
            rich_progress.TextColumn("ETA {task.fields[eta]}"),
            console=console,
            auto_refresh=False,  # redrawn from tick(): no refresh thread
            get_time=clock,
            # Leave sys.stdout/sys.stderr alone (rich would swap them while live): our logs
            # already go through the console, and `report` may be writing to stdout.
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._started = False
        self._closed = False

    def start(self, total_by_region: Mapping[str, int]) -> None:
        self._tally.start(total_by_region)
        if not self._started:
            self._started = True
            self._display.start()
        self._redraw(self._tally.clock())

    def tick(self) -> None:
        now = self._tally.clock()
        if self._closed or not self._started:
            return
        if self._last_refresh is not None and now - self._last_refresh < self._refresh_s:
            return
        self._redraw(now)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._started:
            self._redraw(self._tally.clock())
            self._display.stop()

    def _redraw(self, now: float) -> None:
        self._last_refresh = now
        tally = self._tally
        tally.sample(now)
        for region, row in sorted(tally.regions.items()):
            self._update(region, row)
        self._update(_TOTAL, tally.total, limit=tally.pace_text())
        self._display.refresh()

    def _update(self, name: str, row: _Row, *, limit: str | None = None) -> None:
        columns = _columns(row)
        if limit is not None:
            columns["limit"] = limit  # the total row: the learned pace, if any
        task = self._tasks.get(name)
        if task is None:
            # The total row stays last: re-add it after a new region appears.
            if name != _TOTAL and _TOTAL in self._tasks:
                self._display.remove_task(self._tasks.pop(_TOTAL))
            task = self._tasks[name] = self._display.add_task(name, **columns)
        else:
            self._display.update(task, **columns)


def _columns(row: _Row) -> dict[str, Any]:
    return {
        "completed": row.done,
        "total": max(row.total, row.done),
        "rate": "-" if row.rate is None else f"{row.rate:.1f}/s",
        "retries": row.retries,
        "failed": row.failed,
        "limit": "" if row.limit is None else f"limit {row.limit}",
        "eta": _eta_text(row.eta_s),
    }


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
