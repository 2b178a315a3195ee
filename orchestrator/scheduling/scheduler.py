"""The nightly scheduler: cron firing in an explicit time zone, no overlap, missed runs.

Three rules define it (README, "schedule"):

* **DST.** Cron fields are matched against *local wall time* in the schedule's zone.
  A wall time that does not exist (spring forward) fires once, at the first valid
  instant after the gap; every candidate inside one gap collapses onto that instant.
  A wall time that happens twice (fall back) fires once, at its first occurrence.
  croniter's own DST handling is not used: it only produces naive wall times, and
  :meth:`CronSchedule.resolve` maps them to instants with zoneinfo's ``fold``.
* **Overlap.** A firing holds ``<state_dir>/schedule.lock`` (``flock``) while its job
  runs. A firing that comes due while the lock is held, by this process or another,
  is reported as :class:`FiringSkipped` with reason ``overlap``: never doubled, never queued.
* **Missed runs.** The last fired scheduled time is persisted in
  ``<state_dir>/schedule-state.json``. Firings that fell due while the scheduler was
  not running are handled by :class:`MissedRunPolicy`: ``skip`` or ``run_once``.

This module knows nothing of the rest of the package: the job a firing runs
(discover -> run -> report) is passed in by the CLI.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import fcntl
import functools
import json
import os
import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import anyio
import anyio.to_thread
import structlog
from anyio.abc import TaskGroup
from croniter import CroniterBadDateError, CroniterError, croniter

from orchestrator.atomic_file import replace_file
from orchestrator.errors import ConfigError, ScheduleError
from orchestrator.ledger.archive import compress_closed
from orchestrator.ledger.snapshot import snapshot_path
from orchestrator.safe_file import NotRegularFileError, open_or_create, open_regular
from orchestrator.safe_text import for_terminal

__all__ = [
    "LOCK_FILE_NAME",
    "STATE_FILE_NAME",
    "Clock",
    "CronSchedule",
    "Decision",
    "DueWindow",
    "Firing",
    "FiringFinished",
    "FiringSkipped",
    "FiringStarted",
    "Job",
    "MissedRunMode",
    "MissedRunPolicy",
    "ScheduleEvent",
    "ScheduleState",
    "Scheduler",
    "SkipReason",
    "SleepUntil",
    "fire_now",
    "ledger_path_for",
    "prune_ledgers",
    "sleep_until_wall",
    "utc_now",
]

STATE_FILE_NAME = "schedule-state.json"
LOCK_FILE_NAME = "schedule.lock"

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
# Missed firings are counted only for the report; a year of "* * * * *" is not walked.
_MAX_COUNTED = 10_000
_STATE_VERSION = 1
_LEDGER_NAME = re.compile(r"^ledger-\d{8}T\d{4}Z\.jsonl$")

Clock = Callable[[], datetime]
SleepUntil = Callable[[datetime], Awaitable[None]]


def utc_now() -> datetime:
    """The real clock: an aware UTC datetime."""
    return datetime.now(UTC)


async def sleep_until_wall(
    when: datetime, *, clock: Clock = utc_now, max_step_s: float = 60.0
) -> None:
    """Sleep until ``clock()`` reaches ``when``.

    Sleeps in steps of at most ``max_step_s`` and re-reads the clock between them: the
    event loop's monotonic clock stops during a system suspend and knows nothing of
    wall-clock corrections, so one long sleep could wake hours late.
    """
    # A loop of bounded sleeps is the point here (re-reading the wall clock), not polling.
    while (remaining := (when - clock()).total_seconds()) > 0:  # noqa: ASYNC110 - see above
        await anyio.sleep(min(remaining, max_step_s))


def _require_aware(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got naive {value!r}")
    return value.astimezone(UTC)


def _stamp(value: datetime) -> str:
    return f"{value.astimezone(UTC):%Y-%m-%dT%H:%MZ}"


# --------------------------------------------------------------------------- cron + zone


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
        after_utc = _require_aware(after, "after")
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
        limit = _require_aware(at_or_before, "at_or_before")
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


# --------------------------------------------------------------------------- records


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


# --------------------------------------------------------------------------- missed runs


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
            why = f"missed while not running; the on-time firing {_stamp(due.latest)} runs"
            return Decision(Firing(due.latest, now), _skipped_before(due, why))
        if self.mode is MissedRunMode.SKIP:
            detail = "missed while not running; policy skip waits for the next regular time"
            return Decision(None, FiringSkipped(due.earliest, SkipReason.MISSED, detail, due.count))
        if lateness <= self.max_lateness:
            why = f"missed while not running; one catch-up run for {_stamp(due.latest)} covers it"
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


# --------------------------------------------------------------------------- state + lock


@dataclass(frozen=True, slots=True)
class ScheduleState:
    """What survives a restart: the last scheduled time that fired, and how it ended.

    ``last_finished`` is None while that firing runs, or when it was interrupted.
    """

    last_scheduled: datetime
    last_started: datetime
    last_finished: datetime | None = None
    last_exit_code: int | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "version": _STATE_VERSION,
            "last_scheduled": self.last_scheduled.isoformat(),
            "last_started": self.last_started.isoformat(),
            "last_finished": None if self.last_finished is None else self.last_finished.isoformat(),
            "last_exit_code": self.last_exit_code,
        }

    @classmethod
    def from_json(cls, data: object) -> ScheduleState:
        if not isinstance(data, dict) or data.get("version") != _STATE_VERSION:
            raise ValueError(f"not a version {_STATE_VERSION} schedule state")
        finished = data.get("last_finished")
        code = data.get("last_exit_code")
        if code is not None and not isinstance(code, int):
            raise ValueError("last_exit_code is not an integer")
        return cls(
            last_scheduled=_parse_instant(data["last_scheduled"]),
            last_started=_parse_instant(data["last_started"]),
            last_finished=None if finished is None else _parse_instant(finished),
            last_exit_code=code,
        )


def _parse_instant(value: object) -> datetime:
    if not isinstance(value, str):
        raise TypeError(f"{value!r} is not a timestamp")
    return _require_aware(datetime.fromisoformat(value), "timestamp")


@dataclass(frozen=True, slots=True)
class _StateFile:
    """The JSON state file, replaced atomically (write temp, fsync, rename, fsync dir)."""

    path: Path

    def load(self) -> ScheduleState | None:
        try:
            # The state directory is untrusted: no symlink, no FIFO (it would block for good).
            with os.fdopen(open_regular(self.path, os.O_RDONLY), "rb") as handle:
                raw = handle.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ScheduleError(
                f"schedule state {self.path}: cannot read: {exc.strerror or exc}"
            ) from exc
        try:
            return ScheduleState.from_json(json.loads(raw))
        except (ValueError, KeyError, TypeError) as exc:
            raise ScheduleError(
                f"schedule state {self.path}: unreadable ({exc}); delete it to start afresh "
                "(firings missed before the restart are then not detected)"
            ) from exc

    def save(self, state: ScheduleState) -> None:
        data = json.dumps(state.to_json(), indent=2).encode() + b"\n"
        try:
            replace_file(self.path, data)
        except OSError as exc:
            raise ScheduleError(f"schedule state {self.path}: cannot write: {exc}") from exc


class _FiringLock:
    """An exclusive ``flock`` on the lock file, held for the length of one firing.

    flock locks belong to the open file description, so a second open of the file in
    this very process conflicts too: one mechanism covers both kinds of overlap.
    """

    __slots__ = ("_fd",)

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    @classmethod
    def try_acquire(cls, path: Path, note: str) -> _FiringLock | None:
        try:
            # A symlink planted here would make us truncate and write the file it names.
            fd, _ = open_or_create(path, os.O_RDWR)
        except OSError as exc:
            raise ScheduleError(f"schedule lock {path}: cannot open: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return None
            raise ScheduleError(f"schedule lock {path}: cannot lock: {exc}") from exc
        # Who holds it, for the skip report of whoever finds it held. Diagnostic only.
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, note.encode(), 0)
        return cls(fd)

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the last descriptor drops the flock


def _lock_holder(path: Path) -> str:
    with contextlib.suppress(OSError):
        with os.fdopen(open_regular(path, os.O_RDONLY), "rb") as handle:
            note = for_terminal(handle.read(200).decode(errors="replace").strip(), 200)
        if note:
            return note
    return "unknown holder"


# --------------------------------------------------------------------------- scheduler


class Scheduler:
    """Fires ``job`` on ``schedule`` until stopped.

    ``clock`` and ``sleep_until`` are injectable so tests run days of schedule in
    milliseconds. Every event goes to the structured log and to ``on_event``.
    """

    def __init__(
        self,
        schedule: CronSchedule,
        job: Job,
        *,
        state_dir: Path,
        policy: MissedRunPolicy | None = None,
        clock: Clock = utc_now,
        sleep_until: SleepUntil | None = None,
        on_event: Callable[[ScheduleEvent], None] | None = None,
    ) -> None:
        self._schedule = schedule
        self._job = job
        self._state_dir = state_dir
        self._state = _StateFile(state_dir / STATE_FILE_NAME)
        self._lock_path = state_dir / LOCK_FILE_NAME
        self._policy = policy if policy is not None else MissedRunPolicy()
        self._clock = clock
        self._sleep_until = sleep_until or functools.partial(sleep_until_wall, clock=clock)
        self._on_event = on_event
        self._log = structlog.get_logger("orchestrator.scheduling.scheduler")
        self._running: Firing | None = None
        self._stopping = False
        self._started = False
        self._sleep_scope: anyio.CancelScope | None = None

    @property
    def running(self) -> Firing | None:
        """The firing whose job is in progress, if any."""
        return self._running

    def request_stop(self) -> None:
        """Fire nothing more; :meth:`run` returns once the running firing (if any) ends."""
        self._stopping = True
        if self._sleep_scope is not None:
            self._sleep_scope.cancel()

    async def run(self, *, max_firings: int | None = None) -> None:
        """Loop: wait for the next due time, then fire it or report why not.

        ``max_firings`` bounds the due times handled (fired or skipped; one gap of missed
        firings counts once); None runs until :meth:`request_stop` or cancellation.
        Raises :class:`ScheduleError` when the state or lock file fails. Call it once.
        """
        if self._started:
            raise RuntimeError("Scheduler.run() was already called; make a new Scheduler")
        self._started = True
        try:
            await anyio.to_thread.run_sync(self._prepare_dir)
            state = await anyio.to_thread.run_sync(self._state.load)
            # Never fired before: start from now, so nothing counts as missed.
            cursor = state.last_scheduled if state is not None else self._clock()
            async with anyio.create_task_group() as tg:
                handled = 0
                while not self._stopping and (max_firings is None or handled < max_firings):
                    due = await self._wait_for_due(cursor)
                    if due is None:
                        continue
                    cursor = due.latest
                    handled += 1
                    decision = self._policy.decide(due, self._clock())
                    if decision.skipped is not None:
                        self._emit(decision.skipped)
                    if decision.fire is not None:
                        self._try_fire(tg, decision.fire)
        except* ScheduleError as group:
            raise group.exceptions[0]  # noqa: B904 - unwrap; it keeps its own cause

    async def _wait_for_due(self, cursor: datetime) -> DueWindow | None:
        """Sleep until the next firing after ``cursor``; None if woken early or stopped."""
        nxt = self._schedule.next_fire(cursor)
        now = self._clock()
        if nxt > now:
            self._log.info("schedule.waiting", next_fire=nxt.isoformat())
            with anyio.CancelScope() as scope:
                self._sleep_scope = scope
                await self._sleep_until(nxt)
            self._sleep_scope = None
            now = self._clock()
            if self._stopping or now < nxt:
                return None
        latest = self._schedule.previous_fire(now)
        return DueWindow(nxt, latest, self._count_between(nxt, latest))

    def _count_between(self, first: datetime, last: datetime) -> int:
        count, cursor = 1, first
        while cursor < last and count < _MAX_COUNTED:
            cursor = self._schedule.next_fire(cursor)
            count += 1
        return count

    def _try_fire(self, tg: TaskGroup, firing: Firing) -> None:
        if self._running is not None:
            detail = f"the firing for {_stamp(self._running.scheduled)} is still running"
            self._emit(FiringSkipped(firing.scheduled, SkipReason.OVERLAP, detail))
            return
        note = f"pid {os.getpid()} firing {_stamp(firing.scheduled)}\n"
        lock = _FiringLock.try_acquire(self._lock_path, note)
        if lock is None:
            detail = f"{self._lock_path} is held ({_lock_holder(self._lock_path)})"
            self._emit(FiringSkipped(firing.scheduled, SkipReason.OVERLAP, detail))
            return
        self._running = firing
        tg.start_soon(self._fire, firing, lock)

    async def _fire(self, firing: Firing, lock: _FiringLock) -> None:
        try:
            # Re-read under the lock: another scheduler on this state dir may have fired
            # this very time and released the lock a moment ago.
            previous = await anyio.to_thread.run_sync(self._state.load)
            if previous is not None and previous.last_scheduled >= firing.scheduled:
                detail = f"already fired (state says {_stamp(previous.last_scheduled)})"
                self._emit(FiringSkipped(firing.scheduled, SkipReason.ALREADY_FIRED, detail))
                return
            # Recorded before the job starts: a crash mid-job must never fire it again.
            started = ScheduleState(firing.scheduled, firing.fired_at)
            await anyio.to_thread.run_sync(self._state.save, started)
            self._emit(FiringStarted(firing))
            exit_code, error = await self._call_job(firing)
            finished_at = self._clock()
            done = ScheduleState(firing.scheduled, firing.fired_at, finished_at, exit_code)
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._state.save, done)
            self._emit(FiringFinished(firing, finished_at, exit_code, error))
        finally:
            lock.release()
            self._running = None

    async def _call_job(self, firing: Firing) -> tuple[int | None, str | None]:
        try:
            return await self._job(firing), None
        except Exception as exc:  # noqa: BLE001 - one failed night must not end the schedule
            self._log.exception("schedule.job_failed", scheduled=firing.scheduled.isoformat())
            return None, f"{type(exc).__name__}: {exc}"

    def _prepare_dir(self) -> None:
        _make_dir(self._state_dir)

    def _emit(self, event: ScheduleEvent) -> None:
        match event:
            case FiringStarted(firing=f):
                self._log.info(
                    "schedule.firing_started",
                    scheduled=f.scheduled.isoformat(),
                    catch_up=f.catch_up,
                )
            case FiringFinished(firing=f, exit_code=code, error=error):
                self._log.info(
                    "schedule.firing_finished",
                    scheduled=f.scheduled.isoformat(),
                    exit_code=code,
                    error=error,
                )
            case FiringSkipped(scheduled=t, reason=reason, detail=detail, count=count):
                self._log.warning(
                    "schedule.firing_skipped",
                    scheduled=t.isoformat(),
                    reason=reason.value,
                    count=count,
                    detail=detail,
                )
        if self._on_event is not None:
            self._on_event(event)


async def fire_now(
    job: Job, *, state_dir: Path, clock: Clock = utc_now
) -> FiringFinished | FiringSkipped:
    """Fire ``job`` once, now, outside any cron schedule (``schedule --once``: cron, systemd
    timers, Kubernetes CronJobs and tests).

    It takes the scheduler's lock, so it never overlaps a firing of a scheduler (or another
    ``--once``) on the same state directory: when the lock is held it returns
    :class:`FiringSkipped` (``overlap``) without running. It does not touch the state file:
    the time it fires is not a scheduled time. The firing is stamped with the current
    minute, which names its ledger. Errors of the job propagate (after the lock is freed).
    """
    await anyio.to_thread.run_sync(functools.partial(_make_dir, state_dir))
    now = clock()
    firing = Firing(now.astimezone(UTC).replace(second=0, microsecond=0), now)
    lock_path = state_dir / LOCK_FILE_NAME
    log = structlog.get_logger("orchestrator.scheduling.scheduler")
    lock = _FiringLock.try_acquire(lock_path, f"pid {os.getpid()} once {_stamp(now)}\n")
    if lock is None:
        detail = f"{lock_path} is held ({_lock_holder(lock_path)})"
        log.warning("schedule.firing_skipped", reason="overlap", detail=detail)
        return FiringSkipped(firing.scheduled, SkipReason.OVERLAP, detail)
    try:
        log.info("schedule.firing_started", scheduled=firing.scheduled.isoformat(), once=True)
        code = await job(firing)
    finally:
        lock.release()
    finished = FiringFinished(firing, clock(), code)
    log.info("schedule.firing_finished", scheduled=firing.scheduled.isoformat(), exit_code=code)
    return finished


def _make_dir(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ScheduleError(f"schedule state dir {directory}: {exc}") from exc


# --------------------------------------------------------------------------- dated ledgers


def ledger_path_for(firing: Firing, directory: Path) -> Path:
    """``<directory>/ledger-YYYYMMDDTHHMMZ.jsonl``, stamped with the scheduled time in UTC.

    UTC keeps names unique and sortable across DST changes; a catch-up firing reuses the
    name of the scheduled time it stands for.
    """
    return directory / f"ledger-{firing.scheduled.astimezone(UTC):%Y%m%dT%H%MZ}.jsonl"


def prune_ledgers(directory: Path, keep: int, *, in_use: Path | None = None) -> list[Path]:
    """Delete dated ledgers beyond the newest ``keep`` (by name), each with its history
    snapshot; return the ledgers deleted.

    Never deletes ``in_use``, nor a ledger another process holds locked; files that do not
    look like dated ledgers are left alone.
    """
    if keep < 1:
        raise ConfigError(f"schedule keep_ledgers {keep}: must be at least 1")
    try:
        names = sorted((p for p in directory.iterdir() if _LEDGER_NAME.match(p.name)), reverse=True)
    except OSError as exc:
        raise ScheduleError(f"ledger directory {directory}: cannot list: {exc}") from exc
    removed: list[Path] = []
    for path in names[keep:]:
        if in_use is not None and _same_file(path, in_use):
            continue
        if _unlink_unless_locked(path):
            removed.append(path)
    return removed + compress_closed(directory, keep, in_use=in_use)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:
        return a.resolve() == b.resolve()


def _unlink_unless_locked(path: Path) -> bool:
    try:
        fd = open_regular(path, os.O_RDONLY)
    except (FileNotFoundError, NotRegularFileError):
        return False  # gone, or a symlink/FIFO planted there: not ours to follow or delete
    except OSError as exc:
        raise ScheduleError(f"ledger {path}: cannot open for pruning: {exc}") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a run or a resume is writing it
        try:
            path.unlink()
            # Under the same lock: a run of this ledger would be the one to write it.
            Path(snapshot_path(path)).unlink(missing_ok=True)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise ScheduleError(f"ledger {path}: cannot delete: {exc}") from exc
        return True
    finally:
        os.close(fd)
