"""The missed-run policy alone: its decisions and its validation (pure, no loop)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from orchestrator.errors import ConfigError
from orchestrator.scheduling.missed import DueWindow, MissedRunMode, MissedRunPolicy


def utc(text: str) -> datetime:
    """'2026-03-29 01:00' -> aware UTC datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("mode", "lateness_h", "expected_fire", "expected_skip"),
    [
        (MissedRunMode.RUN_ONCE, 12, ("2026-03-27 01:30", True), ("2026-03-25 01:30", "missed", 2)),
        (MissedRunMode.RUN_ONCE, 5, None, ("2026-03-25 01:30", "too_late", 3)),
        (MissedRunMode.SKIP, 12, None, ("2026-03-25 01:30", "missed", 3)),
    ],
)
def test_policy_decisions(
    mode: MissedRunMode,
    lateness_h: int,
    expected_fire: tuple[str, bool] | None,
    expected_skip: tuple[str, str, int],
) -> None:
    due = DueWindow(utc("2026-03-25 01:30"), utc("2026-03-27 01:30"), 3)
    decision = MissedRunPolicy(mode, timedelta(hours=lateness_h)).decide(
        due, utc("2026-03-27 07:00")
    )
    if expected_fire is None:
        assert decision.fire is None
    else:
        assert decision.fire is not None
        assert (decision.fire.scheduled, decision.fire.catch_up) == (
            utc(expected_fire[0]),
            expected_fire[1],
        )
    assert decision.skipped is not None
    skipped = decision.skipped
    assert (skipped.scheduled, skipped.reason, skipped.count) == (
        utc(expected_skip[0]),
        expected_skip[1],
        expected_skip[2],
    )


def test_policy_validation() -> None:
    assert MissedRunPolicy.from_config("skip").mode is MissedRunMode.SKIP
    assert MissedRunPolicy("run_once").mode is MissedRunMode.RUN_ONCE  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="missed_runs 'twice': one of skip, run_once"):
        MissedRunPolicy.from_config("twice")
    with pytest.raises(ConfigError, match="max_lateness"):
        MissedRunPolicy(max_lateness=timedelta(seconds=10))
    with pytest.raises(ConfigError, match="grace"):
        MissedRunPolicy(grace=timedelta(seconds=-1))
