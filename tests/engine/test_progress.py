"""Progress: rich rows on a (fake) terminal, ``run.progress`` events elsewhere, a fake clock."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator

import anyio
import pytest
import structlog
from rich.console import Console
from structlog.testing import capture_logs

from orchestrator.cli.logs import close_logging, configure_logging
from orchestrator.engine.progress import (
    LogProgress,
    NullProgress,
    Progress,
    RichProgress,
    make_progress,
    run_ticks,
)

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def console() -> Console:
    return Console(file=io.StringIO(), force_terminal=True, width=100)


def screen(console: Console) -> str:
    return _ANSI.sub("", console.file.getvalue())  # type: ignore[attr-defined]  # a StringIO


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    yield
    close_logging()


def test_make_progress_picks_by_terminal(console: Console) -> None:
    assert isinstance(make_progress(True, console=console), RichProgress)
    assert isinstance(make_progress(False), LogProgress)
    # Every implementation is what the pool and the job expect (one protocol for both).
    for progress in (make_progress(True, console=console), make_progress(False), NullProgress()):
        either: Progress = progress
        assert either is progress


def test_rich_rows_show_regions_counts_and_retries(console: Console, clock: FakeClock) -> None:
    progress = make_progress(True, console=console, clock=clock)
    progress.start({"cn-east-2": 10, "cn-south-1": 4})
    for _ in range(6):
        clock.now += 1.0
        progress.advance("cn-east-2", "replicated")
        progress.tick()
    progress.advance("cn-south-1", "failed")
    progress.retry("cn-south-1")
    progress.retry("cn-south-1")
    progress.set_limit("cn-south-1", 7)
    clock.now += 1.0
    progress.tick()
    progress.close()
    text = screen(console)
    final = text[text.rindex("cn-east-2") :]
    east, south, total = [line for line in final.splitlines() if line.strip()][:3]
    assert "6/10" in east
    assert "0.9/s" in east  # 6 pairs in the 7 s since start
    assert "ETA 0:05" in east  # 4 left at 6/7 a second: 4.7 s
    assert south.startswith("cn-south-1")
    assert "1/4" in south
    assert "retries 2" in south
    assert "failed 1" in south
    assert "limit 7" in south
    assert total.startswith("total")
    assert "7/14" in total


def test_rich_redraws_at_most_four_times_a_second(console: Console, clock: FakeClock) -> None:
    progress = RichProgress(console, clock=clock)
    progress.start({"cn-east-2": 100})
    drawn = len(screen(console))
    for _ in range(20):  # 20 ticks within 0.2 s of clock time: no redraw
        clock.now += 0.01
        progress.advance("cn-east-2", "replicated")
        progress.tick()
    assert len(screen(console)) == drawn
    clock.now += 0.06
    progress.tick()
    assert len(screen(console)) > drawn
    assert "20/100" in screen(console)
    progress.close()
    progress.close()  # idempotent


def test_a_region_the_plan_did_not_announce_gets_a_row(console: Console, clock: FakeClock) -> None:
    progress = RichProgress(console, clock=clock)
    progress.start({"cn-east-2": 2})
    progress.advance("ap-southeast-1", "replicated")
    clock.now += 1.0
    progress.tick()
    progress.close()
    final = screen(console)
    final = final[final.rindex("cn-east-2") :]
    names = [line.split()[0] for line in final.splitlines() if line.strip()]
    assert names == ["cn-east-2", "ap-southeast-1", "total"]


def test_log_progress_cadence_and_fields(clock: FakeClock) -> None:
    with capture_logs() as logs:
        progress = make_progress(False, clock=clock, interval_s=10.0)
        progress.start({"cn-east-2": 100, "cn-south-1": 50})
        for second in range(1, 36):
            clock.now += 1.0
            progress.advance("cn-east-2", "replicated")
            if second % 5 == 0:
                progress.advance("cn-south-1", "gave_up")
                progress.retry("cn-south-1")
            progress.tick()
        progress.set_limit("cn-east-2", 16)
        progress.close()
        progress.close()
    events = [entry for entry in logs if entry["event"] == "run.progress"]
    assert [e["elapsed_s"] for e in events] == [10.0, 20.0, 30.0, 35.0]
    assert [e["final"] for e in events] == [False, False, False, True]
    first = events[0]
    assert (first["done"], first["total"], first["failed"], first["retries"]) == (12, 150, 2, 2)
    assert first["log_level"] == "info"
    east = first["regions"]["cn-east-2"]
    assert (east["done"], east["total"], east["rate"], east["eta_s"]) == (10, 100, 1.0, 90)
    south = events[-1]["regions"]["cn-south-1"]
    assert (south["done"], south["failed"], south["retries"]) == (7, 7, 7)
    assert south["rate"] == pytest.approx(0.2)
    assert events[-1]["regions"]["cn-east-2"]["limit"] == 16


def test_hot_path_calls_write_nothing(clock: FakeClock) -> None:
    with capture_logs() as logs:
        progress = LogProgress(structlog.get_logger(), interval_s=10.0, clock=clock)
        progress.start({"cn-east-2": 10_000})
        for _ in range(10_000):
            progress.advance("cn-east-2", "replicated")
            progress.retry("cn-east-2")
            progress.set_limit("cn-east-2", 8)
        progress.tick()  # no clock time passed
    assert logs == []


def test_rate_uses_a_sliding_window(clock: FakeClock) -> None:
    with capture_logs() as logs:
        progress = LogProgress(structlog.get_logger(), interval_s=10.0, clock=clock, window_s=20.0)
        progress.start({"r": 1000})
        for second in range(1, 61):
            clock.now += 1.0
            for _ in range(10 if second <= 30 else 1):  # fast, then slow
                progress.advance("r", "replicated")
            progress.tick()
    rates = [e["regions"]["r"]["rate"] for e in logs]
    assert rates[:3] == [10.0, 10.0, 10.0]
    assert rates[-1] == 1.0  # the last 20 s only, not the average since start


def test_logs_and_the_rich_display_share_one_console(console: Console, clock: FakeClock) -> None:
    configure_logging(fmt="auto", level="info", log_file=None, console=console)
    progress = make_progress(True, console=console, clock=clock)
    progress.start({"cn-east-2": 3})
    clock.now += 1.0
    progress.advance("cn-east-2", "replicated")
    structlog.get_logger().warning("replicate.retry", region="cn-east-2", status=503)
    progress.tick()
    progress.close()
    text = screen(console)
    assert "replicate.retry" in text
    assert "status=503" in text
    # The log line was printed above the rows, and the rows were drawn again after it.
    assert text.rindex("replicate.retry") < text.rindex("1/3")


@pytest.mark.anyio
async def test_run_ticks_drives_tick_until_cancelled() -> None:
    ticks: list[int] = []
    sleeps: list[float] = []

    class Counting(NullProgress):
        def tick(self) -> None:
            ticks.append(1)

    with anyio.CancelScope() as scope:

        async def fake_sleep(seconds: float) -> None:
            sleeps.append(seconds)
            if len(sleeps) == 3:
                scope.cancel()
            await anyio.lowlevel.checkpoint()

        await run_ticks(Counting(), interval_s=0.5, sleep=fake_sleep)
    assert len(ticks) == 3
    assert sleeps == [0.5, 0.5, 0.5]


def test_the_learned_pace_is_shown_in_the_total_row_and_the_log_events(
    console: Console, clock: FakeClock
) -> None:
    rich = make_progress(True, console=console, clock=clock)
    rich.start({"cn-east-2": 10})
    rich.set_pace("cn-north-1/p1", 48.5)
    rich.set_pace("cn-north-1/p2", 50.0)
    rich.set_pace("cn-north-1/p3", None)  # never throttled: unpaced
    clock.now += 1.0
    rich.close()
    total = [line for line in screen(console).splitlines() if line.startswith("total")][-1]
    assert "pace 98.5/s" in total

    with capture_logs() as logs:
        plain = make_progress(False, clock=clock, interval_s=10.0)
        plain.start({"cn-east-2": 10})
        plain.close()
        assert "pace" not in logs[-1]  # nothing paced: no field
        plain = make_progress(False, clock=clock, interval_s=10.0)
        plain.start({"cn-east-2": 10})
        plain.set_pace("cn-north-1/p1", 48.5)
        plain.close()
    assert logs[-1]["pace"] == {"cn-north-1/p1": 48.5}
