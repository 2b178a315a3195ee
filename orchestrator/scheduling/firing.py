"""One firing of a schedule, and the events that report it (started, finished, skipped)."""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

__all__ = [
    "Firing",
    "FiringFinished",
    "FiringSkipped",
    "FiringStarted",
    "Job",
    "ScheduleEvent",
    "SkipReason",
]


@dataclass(frozen=True, slots=True)
class Firing:
    """One firing handed to the job.

    ``scheduled`` is the cron instant it stands for (UTC): it names the dated ledger.
    ``catch_up`` is true when it runs late under ``run_once`` after downtime.
    """

    scheduled: datetime
    fired_at: datetime
    catch_up: bool = False


class SkipReason(enum.StrEnum):
    OVERLAP = "overlap"
    """The previous firing still holds the lock (this process or another)."""
    MISSED = "missed"
    """Fell due while the scheduler was not running; the policy does not run it."""
    TOO_LATE = "too_late"
    """Missed, and older than ``max_lateness``: ``run_once`` does not catch it up."""
    ALREADY_FIRED = "already_fired"
    """The state file says another scheduler already fired this scheduled time."""


@dataclass(frozen=True, slots=True)
class FiringStarted:
    firing: Firing


@dataclass(frozen=True, slots=True)
class FiringFinished:
    """``exit_code`` is the job's result; ``error`` is set (and the code None) when it raised."""

    firing: Firing
    finished_at: datetime
    exit_code: int | None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class FiringSkipped:
    """``count`` scheduled times starting at ``scheduled`` were not run, for ``reason``.

    Missed firings are reported as one event per gap; ``count`` stops at 10 000.
    """

    scheduled: datetime
    reason: SkipReason
    detail: str
    count: int = 1


ScheduleEvent = FiringStarted | FiringFinished | FiringSkipped
Job = Callable[[Firing], Awaitable[int]]
