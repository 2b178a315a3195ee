"""Progress off a terminal: ``run.progress`` events, their cadence, fields and rate."""

from __future__ import annotations

import pytest
import structlog
from rich.console import Console
from structlog.testing import capture_logs

from orchestrator.engine.progress import make_progress
from orchestrator.engine.progress_log import LogProgress
from tests.helpers.progress_screens import FakeClock, fake_terminal


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def console() -> Console:
    return fake_terminal()


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
