"""Progress on a (fake) terminal: rich rows per region and in total, redrawn at most 4/s."""

from __future__ import annotations

import pytest
from rich.console import Console

from orchestrator.engine.progress import make_progress
from orchestrator.engine.progress_rich import RichProgress
from tests.helpers.progress_screens import FakeClock, fake_terminal, screen


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def console() -> Console:
    return fake_terminal()


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
