"""Missed runs: what happens to firings that fell due while the scheduler was not running."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

from orchestrator.errors import ConfigError
from orchestrator.scheduling.clock import stamp
from orchestrator.scheduling.firing import Firing, FiringSkipped, SkipReason

__all__ = ["Decision", "DueWindow", "MissedRunMode", "MissedRunPolicy"]


class MissedRunMode(enum.StrEnum):
    SKIP = "skip"
    """After downtime, wait for the next regular time."""
    RUN_ONCE = "run_once"
    """After downtime, run once at once (not once per missed firing)."""


@dataclass(frozen=True, slots=True)
class DueWindow:
    """The scheduled times that are due: the earliest, the latest, and how many (capped)."""

    earliest: datetime
    latest: datetime
    count: int


@dataclass(frozen=True, slots=True)
class Decision:
    """What :meth:`MissedRunPolicy.decide` says: the firing to run now (if any), and the
    scheduled times reported as not run (if any)."""

    fire: Firing | None
    skipped: FiringSkipped | None


@dataclass(frozen=True, slots=True)
class MissedRunPolicy:
    """What to do with firings that fell due while the scheduler was not running.

    A due firing is *on time* when it is at most ``grace`` old when the scheduler looks
    at it; it then runs whatever the mode. Older is *missed*: ``skip`` drops it, and
    ``run_once`` runs the newest missed firing once, immediately, unless it is older than
    ``max_lateness``. Any earlier missed firings are reported, never run one by one.
    """

    mode: MissedRunMode = MissedRunMode.RUN_ONCE
    max_lateness: timedelta = timedelta(hours=12)
    grace: timedelta = timedelta(minutes=1)

    def __post_init__(self) -> None:
        # Accept the plain string too; the enum keeps the value checked.
        object.__setattr__(self, "mode", _parse_mode(self.mode))
        if self.grace < timedelta(0):
            raise ConfigError("schedule grace: must not be negative")
        if self.max_lateness < self.grace:
            raise ConfigError("schedule max_lateness: must be at least the grace period")

    @classmethod
    def from_config(
        cls, mode: str, *, max_lateness_s: float = 12 * 3600, grace_s: float = 60
    ) -> MissedRunPolicy:
        return cls(_parse_mode(mode), timedelta(seconds=max_lateness_s), timedelta(seconds=grace_s))

    def decide(self, due: DueWindow, now: datetime) -> Decision:
        """Pure: which firing (if any) runs now, and what is reported as skipped."""
        lateness = now - due.latest
        if lateness <= self.grace:
            why = f"missed while not running; the on-time firing {stamp(due.latest)} runs"
            return Decision(Firing(due.latest, now), _skipped_before(due, why))
        if self.mode is MissedRunMode.SKIP:
            detail = "missed while not running; policy skip waits for the next regular time"
            return Decision(None, FiringSkipped(due.earliest, SkipReason.MISSED, detail, due.count))
        if lateness <= self.max_lateness:
            why = f"missed while not running; one catch-up run for {stamp(due.latest)} covers it"
            return Decision(Firing(due.latest, now, catch_up=True), _skipped_before(due, why))
        detail = f"missed by more than max_lateness ({self.max_lateness})"
        return Decision(None, FiringSkipped(due.earliest, SkipReason.TOO_LATE, detail, due.count))


def _skipped_before(due: DueWindow, detail: str) -> FiringSkipped | None:
    """The missed firings before ``due.latest``, reported as one event (None if none)."""
    if due.count <= 1:
        return None
    return FiringSkipped(due.earliest, SkipReason.MISSED, detail, due.count - 1)


def _parse_mode(mode: MissedRunMode | str) -> MissedRunMode:
    try:
        return MissedRunMode(mode)
    except ValueError:
        choices = ", ".join(m.value for m in MissedRunMode)
        raise ConfigError(f"schedule missed_runs {mode!r}: one of {choices}") from None
