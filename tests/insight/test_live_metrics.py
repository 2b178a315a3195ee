"""The metrics file while a run goes on: rewritten every 30 s (fake time), with progress, the
learned pace per endpoint/project, accepted and throttled requests and an ETA."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.engine.live import RunSnapshot
from orchestrator.insight.metrics import PREFIX, RunMetrics, publish_live, render_metrics

pytestmark = pytest.mark.anyio


class _Done(Exception):
    pass


def _value(text: str, sample: str) -> str:
    for line in text.splitlines():
        if line.startswith(PREFIX + sample + " "):
            return line.rsplit(" ", 1)[1]
    raise AssertionError(f"{sample} not in\n{text}")


async def test_the_file_is_rewritten_every_30_s_while_the_run_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "csbs.prom"
    now = [0.0]
    seen: list[str] = []
    done = iter([100, 400, 700])  # pairs done at 30, 60, 90 s

    def snapshot() -> RunSnapshot:
        return RunSnapshot(
            counts={"replicated": next(done)},
            total=1000,
            requests=900,
            retries=12,
            pace={"cn-north-1/p1": {"limit": 99.5, "rate": 97.0, "accepted": 800, "throttled": 9}},
        )

    async def sleep(seconds: float) -> None:
        if path.exists():
            seen.append(path.read_text())
        if len(seen) == 3:
            raise _Done
        assert seconds == 30.0
        now[0] += seconds

    with pytest.raises(_Done):
        await publish_live(path, snapshot, sleep=sleep, clock=lambda: now[0], wall=lambda: 5e8)

    first, second, third = seen
    assert _value(first, "run_in_progress") == "1"
    assert _value(first, "progress_pairs_done") == "100"
    assert _value(first, "progress_pairs_total") == "1000"
    assert "progress_eta_seconds" not in first  # one point: no rate yet
    assert _value(second, "progress_pairs_done") == "400"
    assert _value(second, "progress_eta_seconds") == "60"  # 600 left at 300 per 30 s
    assert _value(third, "progress_eta_seconds") == "30"
    key = '{endpoint_project="cn-north-1/p1"}'
    assert _value(third, f"pace_limit_requests_per_second{key}") == "99.5"
    assert _value(third, f"pace_rate_requests_per_second{key}") == "97"
    throttled = '{endpoint_project="cn-north-1/p1",answer="throttled"}'
    assert _value(third, f"pace_requests_total{throttled}") == "9"
    assert _value(third, "run_duration_seconds") == "90"


def test_the_final_file_says_the_run_ended_and_keeps_the_pace() -> None:
    text = render_metrics(
        RunMetrics(pace={"r/p": {"limit": None, "rate": None, "accepted": 5, "throttled": 0}})
    )
    assert _value(text, "run_in_progress") == "0"
    assert "progress_pairs_done" not in text
    assert _value(text, 'pace_limit_requests_per_second{endpoint_project="r/p"}') == "NaN"
    assert _value(text, 'pace_rate_requests_per_second{endpoint_project="r/p"}') == "+Inf"


async def test_a_failed_write_never_stops_the_run(tmp_path: Path) -> None:
    path = tmp_path / "missing-dir" / "sub" / "x.prom"
    (tmp_path / "missing-dir").write_text("a file, not a directory")
    calls = 0

    async def sleep(seconds: float) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise _Done

    with pytest.raises(_Done):
        await publish_live(path, lambda: RunSnapshot(total=1), sleep=sleep)
    assert calls == 3
