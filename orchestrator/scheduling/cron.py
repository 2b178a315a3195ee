"""Cron expressions in an explicit IANA time zone, and their DST arithmetic.

Cron fields are matched against *local wall time* in the schedule's zone. A wall time
that does not exist (spring forward) fires once, at the first valid instant after the
gap; every candidate inside one gap collapses onto that instant. A wall time that happens
twice (fall back) fires once, at its first occurrence. croniter's own DST handling is not
used: it only produces naive wall times, and :meth:`CronSchedule.resolve` maps them to
instants with zoneinfo's ``fold``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter

from orchestrator.errors import ConfigError, ScheduleError
from orchestrator.scheduling.clock import require_aware

__all__ = ["CronSchedule"]

_CRON_FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")
_CRON_MACROS = frozenset(
    {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
)
# No real zone shifts its wall clock by more than two hours; a wider window costs only a
# few extra croniter steps and keeps previous_fire() correct anywhere.
_DST_WINDOW = timedelta(hours=3)
# Bounds the candidate walks. A fold of two hours under "* * * * *" needs about 120 steps;
# hitting this limit means a bug, not a schedule.
_MAX_STEPS = 100_000


@dataclass(frozen=True, slots=True)
class CronSchedule:
    """A five-field cron expression (or an ``@daily``-style macro) in an IANA time zone.

    All instants in and out are aware datetimes; results are in UTC.
    """

    expr: str
    tz: str

    def __post_init__(self) -> None:
        _validate_zone(self.tz)
        _validate_cron(self.expr)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)  # ZoneInfo caches instances per key: cheap

    def resolve(self, wall: datetime) -> datetime:
        """The instant (UTC) at which the naive local wall time ``wall`` fires.

        Existing once: that instant. Repeated (fall back): the first occurrence (fold=0).
        Skipped (spring forward): the transition instant, i.e. the first valid local time
        after the gap.
        """
        zone = self.zone
        first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
        if first.astimezone(zone).replace(tzinfo=None) == wall:
            return first
        # In a gap PEP 495 gives fold=0 the offset from before the transition and fold=1
        # the one after, so the transition instant lies in (fold=1, fold=0].
        later = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
        return _transition_between(later, first, zone)

    def next_fire(self, after: datetime) -> datetime:
        """The first firing instant strictly after ``after`` (aware in, aware UTC out)."""
        after_utc = require_aware(after, "after")
        wall = after_utc.astimezone(self.zone).replace(tzinfo=None)
        # Resolution is monotone in wall time and no wall time <= wall(after) resolves to an
        # instant after `after`, so walking forward from wall(after) finds the answer. The
        # walk skips the first occurrences of a fold when `after` lies in its second one.
        for candidate in self._walk(wall, forward=True):
            instant = self.resolve(candidate)
            if instant > after_utc:
                return instant
        raise ScheduleError(f"cron {self.expr!r}: no firing found after {after_utc.isoformat()}")

    def previous_fire(self, at_or_before: datetime) -> datetime:
        """The last firing instant at or before ``at_or_before`` (aware UTC out)."""
        limit = require_aware(at_or_before, "at_or_before")
        # Start past the window in which a fold can map a later wall time to an earlier
        # instant, then walk back.
        wall = limit.astimezone(self.zone).replace(tzinfo=None) + _DST_WINDOW
        for candidate in self._walk(wall, forward=False):
            instant = self.resolve(candidate)
            if instant <= limit:
                return instant
        raise ScheduleError(f"cron {self.expr!r}: no firing found before {limit.isoformat()}")

    def upcoming(self, after: datetime, count: int) -> list[datetime]:
        """The next ``count`` firing instants after ``after`` (for dry runs and tests)."""
        out: list[datetime] = []
        cursor = after
        for _ in range(count):
            cursor = self.next_fire(cursor)
            out.append(cursor)
        return out

    def _walk(self, start: datetime, *, forward: bool) -> Iterator[datetime]:
        """Naive local wall times matching the expression, strictly after (or before) start."""
        it = croniter(self.expr, start)
        step = it.get_next if forward else it.get_prev
        try:
            for _ in range(_MAX_STEPS):
                yield step(datetime)
        except CroniterBadDateError as exc:
            raise ScheduleError(f"cron {self.expr!r}: {exc}") from exc


def _transition_between(before: datetime, after: datetime, zone: ZoneInfo) -> datetime:
    """The first UTC instant in (before, after] that has ``after``'s UTC offset.

    zoneinfo keeps transitions to whole seconds, so a bisection over seconds is exact.
    """
    target = after.astimezone(zone).utcoffset()
    lo, hi = before, after  # invariant: offset(lo) != target, offset(hi) == target
    while (hi - lo) > timedelta(seconds=1):
        mid = lo + (hi - lo) / 2
        mid = mid.replace(microsecond=0)
        if mid <= lo:
            mid = lo + timedelta(seconds=1)
        if mid.astimezone(zone).utcoffset() == target:
            hi = mid
        else:
            lo = mid
    return hi


def _validate_zone(tz: str) -> None:
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise ConfigError(
            f"schedule timezone {tz!r}: not a known IANA time zone name "
            "(for example 'Europe/Berlin' or 'UTC')"
        ) from exc


def _validate_cron(expr: str) -> None:
    text = expr.strip()
    if text.startswith("@"):
        if text not in _CRON_MACROS:
            known = ", ".join(sorted(_CRON_MACROS))
            raise ConfigError(f"schedule cron {expr!r}: unknown macro (one of {known})")
        return
    fields = text.split()
    if len(fields) != len(_CRON_FIELDS):
        raise ConfigError(
            f"schedule cron {expr!r}: expected 5 fields (minute hour day-of-month month "
            f"day-of-week), got {len(fields)}"
        )
    for index, name in enumerate(_CRON_FIELDS):
        # Judge each field alone, the others wildcards, to say *which* one is wrong.
        probe = ["*"] * len(_CRON_FIELDS)
        probe[index] = fields[index]
        if not _cron_valid(" ".join(probe), strict=False):
            raise ConfigError(f"schedule cron {expr!r}: {name} field {fields[index]!r} is invalid")
    if not _cron_valid(text, strict=True):
        raise ConfigError(f"schedule cron {expr!r}: never matches a real date")


def _cron_valid(expr: str, *, strict: bool) -> bool:
    try:
        return bool(croniter.is_valid(expr, strict=strict))
    except (CroniterError, ValueError, TypeError):
        return False
