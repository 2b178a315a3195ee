"""Progress on a terminal: one rich row per destination region and a total row, with
done/total, rate, retries, failures, the adaptive limit (the learned pace on the total row)
and an ETA, redrawn from :meth:`RichProgress.tick` at most 4 times a second."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from rich import progress as rich_progress
from rich.console import Console

from orchestrator.engine.progress_tally import Clock, Counting, Row, Tally

__all__ = ["RichProgress"]

_TOTAL = "total"


class RichProgress(Counting):
    """Live rows on a terminal console, redrawn from :meth:`tick` at most 4 times a second."""

    def __init__(
        self,
        console: Console,
        *,
        clock: Clock = time.monotonic,
        window_s: float = 30.0,
        refresh_s: float = 0.25,
    ) -> None:
        self._tally = Tally(clock, window_s)
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

    def _update(self, name: str, row: Row, *, limit: str | None = None) -> None:
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


def _columns(row: Row) -> dict[str, Any]:
    return {
        "completed": row.done,
        "total": max(row.total, row.done),
        "rate": "-" if row.rate is None else f"{row.rate:.1f}/s",
        "retries": row.retries,
        "failed": row.failed,
        "limit": "" if row.limit is None else f"limit {row.limit}",
        "eta": _eta_text(row.eta_s),
    }


def _eta_text(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
