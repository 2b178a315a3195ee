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

The cron arithmetic is in :mod:`.cron`, the missed-run policy in :mod:`.missed`,
the state file and lock in :mod:`.state`, dated ledgers in :mod:`.retention`.
This module knows nothing of the rest of the package: the job a firing runs
(discover -> run -> report) is passed in by the CLI.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import anyio
import anyio.to_thread
import structlog
from anyio.abc import TaskGroup

from orchestrator.errors import ScheduleError
from orchestrator.scheduling.clock import Clock, SleepUntil, sleep_until_wall, stamp, utc_now
from orchestrator.scheduling.cron import CronSchedule
from orchestrator.scheduling.firing import (
    Firing,
    FiringFinished,
    FiringSkipped,
    FiringStarted,
    Job,
    ScheduleEvent,
    SkipReason,
)
from orchestrator.scheduling.missed import DueWindow, MissedRunPolicy
from orchestrator.scheduling.state import (
    LOCK_FILE_NAME,
    STATE_FILE_NAME,
    FiringLock,
    ScheduleState,
    StateFile,
    lock_holder,
    make_dir,
)

__all__ = ["Scheduler", "fire_now"]

# Missed firings are counted only for the report; a year of "* * * * *" is not walked.
_MAX_COUNTED = 10_000


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
        self._state = StateFile(state_dir / STATE_FILE_NAME)
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
            detail = f"the firing for {stamp(self._running.scheduled)} is still running"
            self._emit(FiringSkipped(firing.scheduled, SkipReason.OVERLAP, detail))
            return
        note = f"pid {os.getpid()} firing {stamp(firing.scheduled)}\n"
        lock = FiringLock.try_acquire(self._lock_path, note)
        if lock is None:
            detail = f"{self._lock_path} is held ({lock_holder(self._lock_path)})"
            self._emit(FiringSkipped(firing.scheduled, SkipReason.OVERLAP, detail))
            return
        self._running = firing
        tg.start_soon(self._fire, firing, lock)

    async def _fire(self, firing: Firing, lock: FiringLock) -> None:
        try:
            # Re-read under the lock: another scheduler on this state dir may have fired
            # this very time and released the lock a moment ago.
            previous = await anyio.to_thread.run_sync(self._state.load)
            if previous is not None and previous.last_scheduled >= firing.scheduled:
                detail = f"already fired (state says {stamp(previous.last_scheduled)})"
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
        make_dir(self._state_dir)

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
    await anyio.to_thread.run_sync(functools.partial(make_dir, state_dir))
    now = clock()
    firing = Firing(now.astimezone(UTC).replace(second=0, microsecond=0), now)
    lock_path = state_dir / LOCK_FILE_NAME
    log = structlog.get_logger("orchestrator.scheduling.scheduler")
    lock = FiringLock.try_acquire(lock_path, f"pid {os.getpid()} once {stamp(now)}\n")
    if lock is None:
        detail = f"{lock_path} is held ({lock_holder(lock_path)})"
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
