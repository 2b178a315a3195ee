"""The scheduler: its loop across DST, overlap refusal, missed runs, state, ledgers, --once.

Cron arithmetic alone is in test_cron.py, the missed-run policy alone in test_missed.py.

Time is simulated throughout: a fake clock whose sleeps return when the test moves it
(or at once, in autojump mode). Nothing here waits on the wall clock.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import anyio
import anyio.lowlevel
import pytest
from structlog.testing import capture_logs

from orchestrator.errors import ConfigError, ScheduleError
from orchestrator.ledger.snapshot import snapshot_path
from orchestrator.scheduling.clock import sleep_until_wall
from orchestrator.scheduling.cron import CronSchedule
from orchestrator.scheduling.firing import (
    Firing,
    FiringFinished,
    FiringSkipped,
    FiringStarted,
    ScheduleEvent,
    SkipReason,
)
from orchestrator.scheduling.missed import MissedRunMode, MissedRunPolicy
from orchestrator.scheduling.retention import ledger_path_for, prune_ledgers
from orchestrator.scheduling.scheduler import Scheduler, fire_now
from orchestrator.scheduling.state import LOCK_FILE_NAME, STATE_FILE_NAME, ScheduleState

BERLIN = "Europe/Berlin"
NEW_YORK = "America/New_York"


def utc(text: str) -> datetime:
    """'2026-03-29 01:00' -> aware UTC datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# --------------------------------------------------------------------------- fake time


class FakeClock:
    """A clock that moves only when told, and sleeps that end when it gets there.

    With ``autojump`` a sleep moves the clock to its deadline at once, but only when no
    firing is running (``idle``), so simulated days do not race ahead of a job.
    """

    def __init__(self, start: datetime, *, autojump: bool = False) -> None:
        self.now = start
        self.autojump = autojump
        self.idle: Callable[[], bool] = lambda: True
        self.sleepers: list[anyio.Event] = []
        self.sleeps: list[datetime] = []

    def __call__(self) -> datetime:
        return self.now

    async def sleep_until(self, when: datetime) -> None:
        self.sleeps.append(when)
        if self.autojump:
            await until(self.idle, "the running firing to end before jumping")
            self.now = max(self.now, when)
            await anyio.lowlevel.checkpoint()
            return
        while self.now < when:
            event = anyio.Event()
            self.sleepers.append(event)
            try:
                await event.wait()
            finally:
                self.sleepers.remove(event)

    def advance_to(self, when: datetime) -> None:
        assert when >= self.now
        self.now = when
        for event in self.sleepers:
            event.set()


async def until(predicate: Callable[[], bool], what: str) -> None:
    """Wait (a few ms at a time, for a condition, never for luck) until predicate holds."""
    # Polling, not an Event: some steps finish in worker threads (state file writes).
    with anyio.fail_after(5):
        while not predicate():  # noqa: ASYNC110 - see above
            await anyio.sleep(0.001)
    assert predicate(), what


class Job:
    """A job that records its firings; a firing can be made to block until released."""

    def __init__(self, *, block_first: bool = False, fail_on: set[datetime] | None = None) -> None:
        self.calls: list[Firing] = []
        self.release = anyio.Event()
        self.block_first = block_first
        self.fail_on = fail_on or set()

    async def __call__(self, firing: Firing) -> int:
        self.calls.append(firing)
        if firing.scheduled in self.fail_on:
            raise RuntimeError("discovery failed")
        if self.block_first and len(self.calls) == 1:
            await self.release.wait()
        return 0


def make(
    tmp_path: Path,
    clock: FakeClock,
    job: Job,
    *,
    expr: str = "30 2 * * *",
    tz: str = BERLIN,
    policy: MissedRunPolicy | None = None,
) -> tuple[Scheduler, list[ScheduleEvent]]:
    events: list[ScheduleEvent] = []
    scheduler = Scheduler(
        CronSchedule(expr, tz),
        job,
        state_dir=tmp_path / "state",
        policy=policy,
        clock=clock,
        sleep_until=clock.sleep_until,
        on_event=events.append,
    )
    clock.idle = lambda: scheduler.running is None
    return scheduler, events


def kinds(events: list[ScheduleEvent]) -> list[str]:
    out = []
    for e in events:
        match e:
            case FiringStarted(firing=f):
                out.append(f"started {f.scheduled:%m-%d %H:%M}{' catch-up' if f.catch_up else ''}")
            case FiringFinished(firing=f, exit_code=code):
                out.append(f"finished {f.scheduled:%m-%d %H:%M} {code}")
            case FiringSkipped(scheduled=t, reason=r, count=n):
                out.append(f"skipped {t:%m-%d %H:%M} {r.value} x{n}")
    return out


def write_state(tmp_path: Path, last: datetime) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir(exist_ok=True)
    state = ScheduleState(last, last, last + timedelta(minutes=5), 0)
    (state_dir / STATE_FILE_NAME).write_text(json.dumps(state.to_json()))


def read_state(tmp_path: Path) -> ScheduleState:
    return ScheduleState.from_json(json.loads((tmp_path / "state" / STATE_FILE_NAME).read_text()))


# --------------------------------------------------------------------------- the loop


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("tz", "expr", "start", "expected"),
    [
        (BERLIN, "30 2 * * *", "2026-03-27 12:00",
         ["03-28 01:30", "03-29 01:00", "03-30 00:30", "03-31 00:30"]),
        (BERLIN, "30 2 * * *", "2026-10-23 12:00",
         ["10-24 00:30", "10-25 00:30", "10-26 01:30", "10-27 01:30"]),
        (NEW_YORK, "30 2 * * *", "2026-03-06 12:00",
         ["03-07 07:30", "03-08 07:00", "03-09 06:30", "03-10 06:30"]),
        (NEW_YORK, "30 1 * * *", "2026-10-30 12:00",
         ["10-31 05:30", "11-01 05:30", "11-02 06:30", "11-03 06:30"]),
    ],
)  # fmt: skip
async def test_loop_fires_across_dst_on_a_simulated_clock(
    tmp_path: Path, tz: str, expr: str, start: str, expected: list[str]
) -> None:
    clock = FakeClock(utc(start), autojump=True)
    job = Job()
    scheduler, events = make(tmp_path, clock, job, expr=expr, tz=tz)
    await scheduler.run(max_firings=4)
    assert [f"{f.scheduled:%m-%d %H:%M}" for f in job.calls] == expected
    assert all(f.fired_at == f.scheduled and not f.catch_up for f in job.calls)
    assert kinds(events) == [k for e in expected for k in (f"started {e}", f"finished {e} 0")]
    state = read_state(tmp_path)
    assert f"{state.last_scheduled:%m-%d %H:%M}" == expected[-1]
    assert state.last_exit_code == 0
    assert state.last_finished is not None


@pytest.mark.anyio
async def test_overlap_in_process_is_reported_not_doubled(tmp_path: Path) -> None:
    clock = FakeClock(utc("2026-03-27 12:00"))
    job = Job(block_first=True)
    scheduler, events = make(tmp_path, clock, job)
    with capture_logs() as logs:
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: scheduler.run(max_firings=3))
            await until(lambda: bool(clock.sleepers), "first sleep")
            clock.advance_to(utc("2026-03-28 01:30"))
            await until(lambda: len(job.calls) == 1, "first firing running")
            await until(lambda: bool(clock.sleepers), "second sleep")
            clock.advance_to(utc("2026-03-29 01:00"))  # due while the first still runs
            await until(lambda: any(isinstance(e, FiringSkipped) for e in events), "skip")
            job.release.set()
            await until(lambda: scheduler.running is None, "first firing done")
            await until(lambda: bool(clock.sleepers), "third sleep")
            clock.advance_to(utc("2026-03-30 00:30"))
    assert [f"{f.scheduled:%m-%d %H:%M}" for f in job.calls] == ["03-28 01:30", "03-30 00:30"]
    assert kinds(events) == [
        "started 03-28 01:30",
        "skipped 03-29 01:00 overlap x1",
        "finished 03-28 01:30 0",
        "started 03-30 00:30",
        "finished 03-30 00:30 0",
    ]
    skip = next(e for e in events if isinstance(e, FiringSkipped))
    assert skip.reason == "overlap"
    assert "2026-03-28T01:30Z is still running" in skip.detail
    logged = [entry for entry in logs if entry["event"] == "schedule.firing_skipped"]
    assert logged == [
        {
            "event": "schedule.firing_skipped",
            "log_level": "warning",
            "scheduled": "2026-03-29T01:00:00+00:00",
            "reason": "overlap",
            "count": 1,
            "detail": skip.detail,
        }
    ]


@pytest.mark.anyio
async def test_lock_held_by_another_descriptor_refuses_the_firing(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    lock_path = tmp_path / "state" / LOCK_FILE_NAME
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, b"pid 4242 firing elsewhere\n")
        clock = FakeClock(utc("2026-03-27 12:00"), autojump=True)
        job = Job()
        scheduler, events = make(tmp_path, clock, job)
        await scheduler.run(max_firings=1)
    finally:
        os.close(fd)
    assert job.calls == []
    assert kinds(events) == ["skipped 03-28 01:30 overlap x1"]
    skip = events[0]
    assert isinstance(skip, FiringSkipped)
    assert "pid 4242 firing elsewhere" in skip.detail
    assert not (tmp_path / "state" / STATE_FILE_NAME).exists()


@pytest.fixture
def other_process_lock(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """A real second process holding the scheduler lock until its stdin closes."""
    (tmp_path / "state").mkdir()
    code = (
        "import fcntl, os, sys\n"
        "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
        "os.write(fd, f'pid {os.getpid()} other scheduler'.encode())\n"
        "print('locked', flush=True)\n"
        "sys.stdin.read()\n"
    )
    proc = subprocess.Popen(  # noqa: S603 - our own interpreter and a literal script
        [sys.executable, "-c", code, str(tmp_path / "state" / LOCK_FILE_NAME)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdin is not None
    assert proc.stdout.readline().strip() == "locked"
    yield proc
    proc.stdin.close()
    proc.wait(timeout=10)
    proc.stdout.close()


@pytest.mark.anyio
async def test_lock_held_by_another_process_refuses_the_firing(
    tmp_path: Path, other_process_lock: subprocess.Popen[str]
) -> None:
    clock = FakeClock(utc("2026-03-27 12:00"), autojump=True)
    job = Job()
    scheduler, events = make(tmp_path, clock, job)
    await scheduler.run(max_firings=2)
    assert job.calls == []
    assert kinds(events) == ["skipped 03-28 01:30 overlap x1", "skipped 03-29 01:00 overlap x1"]
    skip = events[0]
    assert isinstance(skip, FiringSkipped)
    assert f"pid {other_process_lock.pid} other scheduler" in skip.detail


@pytest.mark.anyio
async def test_lock_is_released_after_each_firing(tmp_path: Path) -> None:
    clock = FakeClock(utc("2026-03-27 12:00"), autojump=True)
    scheduler, _ = make(tmp_path, clock, Job())
    await scheduler.run(max_firings=1)
    fd = os.open(tmp_path / "state" / LOCK_FILE_NAME, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # would raise if still held
    finally:
        os.close(fd)


@pytest.mark.anyio
async def test_a_time_another_scheduler_already_fired_is_not_fired_again(tmp_path: Path) -> None:
    clock = FakeClock(utc("2026-03-27 12:00"))
    job = Job()
    scheduler, events = make(tmp_path, clock, job)
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: scheduler.run(max_firings=1))
        await until(lambda: bool(clock.sleepers), "sleeping")
        # While we slept, a second scheduler on the same state dir fired and finished it.
        write_state(tmp_path, utc("2026-03-28 01:30"))
        clock.advance_to(utc("2026-03-28 01:30"))
    assert job.calls == []
    assert kinds(events) == ["skipped 03-28 01:30 already_fired x1"]


# --------------------------------------------------------------------------- missed runs


@pytest.mark.anyio
async def test_run_once_catches_up_once_after_downtime(tmp_path: Path) -> None:
    # Last fired three nights ago; three nightly firings were missed; it is 07:00Z now.
    write_state(tmp_path, utc("2026-03-24 01:30"))
    clock = FakeClock(utc("2026-03-27 07:00"), autojump=True)
    job = Job()
    scheduler, events = make(tmp_path, clock, job)
    await scheduler.run(max_firings=2)
    assert kinds(events) == [
        "skipped 03-25 01:30 missed x2",
        "started 03-27 01:30 catch-up",
        "finished 03-27 01:30 0",
        "started 03-28 01:30",
        "finished 03-28 01:30 0",
    ]
    catch_up = job.calls[0]
    assert catch_up.catch_up
    assert catch_up.fired_at == utc("2026-03-27 07:00")
    assert ledger_path_for(catch_up, tmp_path).name == "ledger-20260327T0130Z.jsonl"


@pytest.mark.anyio
async def test_run_once_skips_firings_older_than_max_lateness(tmp_path: Path) -> None:
    write_state(tmp_path, utc("2026-03-24 01:30"))
    clock = FakeClock(utc("2026-03-27 07:00"), autojump=True)
    job = Job()
    policy = MissedRunPolicy(MissedRunMode.RUN_ONCE, max_lateness=timedelta(hours=4))
    scheduler, events = make(tmp_path, clock, job, policy=policy)
    await scheduler.run(max_firings=2)
    assert kinds(events) == [
        "skipped 03-25 01:30 too_late x3",
        "started 03-28 01:30",
        "finished 03-28 01:30 0",
    ]
    assert [f.catch_up for f in job.calls] == [False]


@pytest.mark.anyio
async def test_skip_policy_waits_for_the_next_regular_time(tmp_path: Path) -> None:
    write_state(tmp_path, utc("2026-03-24 01:30"))
    clock = FakeClock(utc("2026-03-27 07:00"), autojump=True)
    job = Job()
    scheduler, events = make(tmp_path, clock, job, policy=MissedRunPolicy(MissedRunMode.SKIP))
    await scheduler.run(max_firings=2)
    assert kinds(events) == [
        "skipped 03-25 01:30 missed x3",
        "started 03-28 01:30",
        "finished 03-28 01:30 0",
    ]
    assert clock.sleeps == [utc("2026-03-28 01:30")]


@pytest.mark.anyio
async def test_restart_without_downtime_misses_nothing(tmp_path: Path) -> None:
    write_state(tmp_path, utc("2026-03-27 01:30"))
    clock = FakeClock(utc("2026-03-27 07:00"), autojump=True)
    job = Job()
    scheduler, events = make(tmp_path, clock, job)
    await scheduler.run(max_firings=1)
    assert kinds(events) == ["started 03-28 01:30", "finished 03-28 01:30 0"]


@pytest.mark.anyio
async def test_restart_just_after_a_missed_time_counts_as_on_time(tmp_path: Path) -> None:
    # Down for two nights, back 30 s after tonight's time: tonight runs as a regular firing.
    write_state(tmp_path, utc("2026-03-25 01:30"))
    clock = FakeClock(utc("2026-03-28 01:30:30"), autojump=True)
    job = Job()
    scheduler, events = make(tmp_path, clock, job, policy=MissedRunPolicy(MissedRunMode.SKIP))
    await scheduler.run(max_firings=1)
    assert kinds(events) == [
        "skipped 03-26 01:30 missed x2",
        "started 03-28 01:30",
        "finished 03-28 01:30 0",
    ]
    assert not job.calls[0].catch_up


@pytest.mark.anyio
async def test_first_start_ever_does_not_catch_up(tmp_path: Path) -> None:
    clock = FakeClock(utc("2026-03-27 07:00"), autojump=True)
    job = Job()
    scheduler, events = make(tmp_path, clock, job)
    await scheduler.run(max_firings=1)
    assert kinds(events) == ["started 03-28 01:30", "finished 03-28 01:30 0"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        (MissedRunMode.RUN_ONCE, ["started 03-28 01:30 catch-up", "finished 03-28 01:30 0"]),
        (MissedRunMode.SKIP, ["skipped 03-28 01:30 missed x1"]),
    ],
)
async def test_a_sleep_that_wakes_hours_late_is_a_missed_run(
    tmp_path: Path, mode: MissedRunMode, expected: list[str]
) -> None:
    # The machine was suspended over the firing time and woke three hours later.
    clock = FakeClock(utc("2026-03-27 12:00"))

    async def suspended_sleep(when: datetime) -> None:
        clock.now = when + timedelta(hours=3)
        await anyio.lowlevel.checkpoint()

    events: list[ScheduleEvent] = []
    scheduler = Scheduler(
        CronSchedule("30 2 * * *", BERLIN),
        Job(),
        state_dir=tmp_path / "state",
        policy=MissedRunPolicy(mode),
        clock=clock,
        sleep_until=suspended_sleep,
        on_event=events.append,
    )
    await scheduler.run(max_firings=1)
    assert kinds(events) == expected


# --------------------------------------------------------------------------- state, errors, stop


@pytest.mark.anyio
async def test_failed_job_is_reported_and_the_schedule_goes_on(tmp_path: Path) -> None:
    clock = FakeClock(utc("2026-03-27 12:00"), autojump=True)
    job = Job(fail_on={utc("2026-03-28 01:30")})
    scheduler, events = make(tmp_path, clock, job)
    await scheduler.run(max_firings=2)
    assert kinds(events) == [
        "started 03-28 01:30",
        "finished 03-28 01:30 None",
        "started 03-29 01:00",
        "finished 03-29 01:00 0",
    ]
    failed = events[1]
    assert isinstance(failed, FiringFinished)
    assert failed.error == "RuntimeError: discovery failed"


@pytest.mark.anyio
async def test_state_records_the_start_before_the_job_runs(tmp_path: Path) -> None:
    clock = FakeClock(utc("2026-03-27 12:00"))
    job = Job(block_first=True)
    scheduler, _ = make(tmp_path, clock, job)
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: scheduler.run(max_firings=1))
        await until(lambda: bool(clock.sleepers), "sleeping")
        clock.advance_to(utc("2026-03-28 01:31"))
        await until(lambda: len(job.calls) == 1, "job running")
        running = read_state(tmp_path)
        assert running.last_scheduled == utc("2026-03-28 01:30")
        assert running.last_started == utc("2026-03-28 01:31")
        assert running.last_finished is None
        job.release.set()
    done = read_state(tmp_path)
    assert done.last_finished == utc("2026-03-28 01:31")
    assert done.last_exit_code == 0
    leftovers = sorted(p.name for p in (tmp_path / "state").iterdir())
    assert leftovers == sorted([LOCK_FILE_NAME, STATE_FILE_NAME])  # no temp files left over


@pytest.mark.anyio
async def test_corrupt_state_file_is_a_schedule_error(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / STATE_FILE_NAME).write_text("{not json")
    clock = FakeClock(utc("2026-03-27 12:00"), autojump=True)
    scheduler, _ = make(tmp_path, clock, Job())
    with pytest.raises(ScheduleError, match=r"unreadable.*delete it"):
        await scheduler.run(max_firings=1)


@pytest.mark.anyio
async def test_request_stop_ends_the_sleep(tmp_path: Path) -> None:
    clock = FakeClock(utc("2026-03-27 12:00"))
    job = Job()
    scheduler, events = make(tmp_path, clock, job)
    async with anyio.create_task_group() as tg:
        tg.start_soon(scheduler.run)
        await until(lambda: bool(clock.sleepers), "sleeping")
        scheduler.request_stop()
    assert job.calls == []
    assert events == []


@pytest.mark.anyio
async def test_a_scheduler_runs_once(tmp_path: Path) -> None:
    clock = FakeClock(utc("2026-03-27 12:00"), autojump=True)
    scheduler, _ = make(tmp_path, clock, Job())
    await scheduler.run(max_firings=1)
    with pytest.raises(RuntimeError, match="already called"):
        await scheduler.run(max_firings=1)


@pytest.mark.anyio
async def test_request_stop_lets_the_running_firing_finish(tmp_path: Path) -> None:
    clock = FakeClock(utc("2026-03-27 12:00"))
    job = Job(block_first=True)
    scheduler, events = make(tmp_path, clock, job)
    done = anyio.Event()

    async def run() -> None:
        await scheduler.run()
        done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        await until(lambda: bool(clock.sleepers), "sleeping")
        clock.advance_to(utc("2026-03-28 01:30"))
        await until(lambda: len(job.calls) == 1, "job running")
        await until(lambda: bool(clock.sleepers), "sleeping again")
        scheduler.request_stop()
        await anyio.sleep(0.005)
        assert not done.is_set()  # still waiting for the job
        job.release.set()
    assert kinds(events) == ["started 03-28 01:30", "finished 03-28 01:30 0"]


@pytest.mark.anyio
async def test_cancellation_releases_the_lock(tmp_path: Path) -> None:
    clock = FakeClock(utc("2026-03-27 12:00"))
    job = Job(block_first=True)
    scheduler, _ = make(tmp_path, clock, job)
    async with anyio.create_task_group() as tg:
        tg.start_soon(scheduler.run)
        await until(lambda: bool(clock.sleepers), "sleeping")
        clock.advance_to(utc("2026-03-28 01:30"))
        await until(lambda: len(job.calls) == 1, "job running")
        tg.cancel_scope.cancel()
    assert scheduler.running is None
    fd = os.open(tmp_path / "state" / LOCK_FILE_NAME, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)
    assert read_state(tmp_path).last_finished is None  # interrupted: no finish recorded


@pytest.mark.anyio
async def test_sleep_until_wall_rereads_the_clock() -> None:
    # A clock that jumps (suspend, NTP step) is noticed on the next short step.
    target = utc("2026-03-28 01:30")
    readings = iter([target - timedelta(hours=5), target - timedelta(seconds=1), target])
    seen: list[datetime] = []

    def clock() -> datetime:
        seen.append(next(readings))
        return seen[-1]

    await sleep_until_wall(target, clock=clock, max_step_s=0.001)
    assert seen[-1] == target
    assert len(seen) == 3


# --------------------------------------------------------------------------- dated ledgers


def test_ledger_name_is_the_utc_scheduled_time() -> None:
    firing = Firing(utc("2026-10-25 00:30"), utc("2026-10-25 00:30:01"))
    assert ledger_path_for(firing, Path("/var/lib/x")) == Path(
        "/var/lib/x/ledger-20261025T0030Z.jsonl"
    )
    local = Firing(utc("2026-10-25 00:30").astimezone(ZoneInfo(BERLIN)), utc("2026-10-25 00:30:01"))
    assert ledger_path_for(local, Path("d")).name == "ledger-20261025T0030Z.jsonl"


def _touch_ledgers(directory: Path, stamps: list[str]) -> list[Path]:
    paths = [directory / f"ledger-{s}.jsonl" for s in stamps]
    for p in paths:
        p.write_text("{}\n")
    return paths


def test_prune_keeps_the_newest_by_name(tmp_path: Path) -> None:
    stamps = ["20260325T0130Z", "20260326T0130Z", "20260327T0130Z", "20260328T0130Z"]
    for ledger in _touch_ledgers(tmp_path, stamps)[1:3]:  # the snapshots go with their ledgers
        Path(snapshot_path(ledger)).write_bytes(b"")
    (tmp_path / "notes.txt").write_text("keep me")
    (tmp_path / "ledger-manual.jsonl").write_text("{}\n")
    removed = prune_ledgers(tmp_path, keep=2)
    assert sorted(p.name for p in removed) == [
        "ledger-20260325T0130Z.jsonl",
        "ledger-20260326T0130Z.jsonl",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "ledger-20260327T0130Z.jsonl",
        "ledger-20260327T0130Z.jsonl.snapshot",
        "ledger-20260328T0130Z.jsonl",
        "ledger-manual.jsonl",
        "notes.txt",
    ]
    assert prune_ledgers(tmp_path, keep=2) == []


def test_prune_never_deletes_the_ledger_in_use_or_a_locked_one(tmp_path: Path) -> None:
    paths = _touch_ledgers(
        tmp_path, ["20260325T0130Z", "20260326T0130Z", "20260327T0130Z", "20260328T0130Z"]
    )
    fd = os.open(paths[1], os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a resume is writing it
        removed = prune_ledgers(tmp_path, keep=1, in_use=paths[0])
    finally:
        os.close(fd)
    assert removed == [paths[2]]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        paths[0].name,
        paths[1].name,
        paths[3].name,
    ]


def test_prune_rejects_keeping_nothing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="keep_ledgers 0: must be at least 1"):
        prune_ledgers(tmp_path, keep=0)


# --------------------------------------------------------------------------- fire_now (--once)


@pytest.mark.anyio
async def test_fire_now_runs_once_under_the_lock_and_leaves_the_state_alone(
    tmp_path: Path,
) -> None:
    clock = FakeClock(utc("2026-03-28 14:07:31"))
    job = Job()
    event = await fire_now(job, state_dir=tmp_path / "state", clock=clock)
    assert isinstance(event, FiringFinished)
    assert event.exit_code == 0
    assert job.calls == [Firing(utc("2026-03-28 14:07"), utc("2026-03-28 14:07:31"))]
    assert not (tmp_path / "state" / STATE_FILE_NAME).exists()


@pytest.mark.anyio
async def test_fire_now_skips_while_a_firing_holds_the_lock(tmp_path: Path) -> None:
    clock = FakeClock(utc("2026-03-27 12:00"))
    blocked = Job(block_first=True)
    scheduler, _ = make(tmp_path, clock, blocked)
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: scheduler.run(max_firings=1))
        await until(lambda: bool(clock.sleepers), "sleeping")
        clock.advance_to(utc("2026-03-28 01:30"))
        await until(lambda: len(blocked.calls) == 1, "the scheduled firing running")
        other = Job()
        event = await fire_now(other, state_dir=tmp_path / "state", clock=clock)
        blocked.release.set()
    assert isinstance(event, FiringSkipped)
    assert event.reason is SkipReason.OVERLAP
    assert "firing 2026-03-28T01:30Z" in event.detail
    assert other.calls == []


@pytest.mark.anyio
async def test_fire_now_lets_a_job_error_through_and_frees_the_lock(tmp_path: Path) -> None:
    clock = FakeClock(utc("2026-03-28 01:30"))
    with pytest.raises(RuntimeError, match="discovery failed"):
        await fire_now(Job(fail_on={utc("2026-03-28 01:30")}), state_dir=tmp_path, clock=clock)
    fd = os.open(tmp_path / LOCK_FILE_NAME, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)
