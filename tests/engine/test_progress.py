"""Progress: the display picked, the hot path, ticks, logs and rows on one console."""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import pytest
import structlog
from rich.console import Console
from structlog.testing import capture_logs

from orchestrator.cli.logs import close_logging, configure_logging
from orchestrator.engine.progress import NullProgress, Progress, make_progress, run_ticks
from orchestrator.engine.progress_log import LogProgress
from orchestrator.engine.progress_rich import RichProgress
from tests.helpers.progress_screens import FakeClock, fake_terminal, screen


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def console() -> Console:
    return fake_terminal()


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
