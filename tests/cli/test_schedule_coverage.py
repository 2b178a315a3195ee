"""``schedule --coverage``: each firing ends with the coverage table, and its gauges join the
run's metrics in the same textfile."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import pytest

from orchestrator.cli.main import build_parser
from orchestrator.cli.nightly import run_schedule
from orchestrator.cli.schedule_options import ScheduleOptions
from orchestrator.errors import ConfigError
from orchestrator.exitcodes import ExitCode
from orchestrator.scheduling.missed import MissedRunPolicy
from tests.cli.test_nightly import JumpingClock, connection, estate_config, utc
from tests.conftest import MakeSimulator


@pytest.mark.anyio
async def test_a_firing_ends_with_coverage_in_the_same_metrics_file(
    make_simulator: MakeSimulator, tmp_path: Path
) -> None:
    state_dir = tmp_path / "state"
    metrics = tmp_path / "nightly.prom"
    clock = JumpingClock(utc("2026-03-28 14:07:31"), state_dir)
    options = ScheduleOptions(
        None, None, state_dir, 14, MissedRunPolicy(), once=True, coverage_rpo_s=26 * 3600.0
    )
    async with make_simulator(items=140, age_days=7) as sim:
        conn = connection(sim)
        conn = replace(conn, settings=conn.settings.with_values(metrics_file=str(metrics)))
        config = estate_config(sim)
        out = io.StringIO()
        code = await run_schedule(
            conn, lambda _: config, options, out=out, clock=clock, handle_signals=False
        )
    assert code == ExitCode.OK  # coverage gaps do not change the firing's code
    text = out.getvalue()
    assert "firing " in text
    assert "worst lag" in text  # the coverage table follows the run's summary
    assert text.index("firing ") < text.index("worst lag")
    gauges = metrics.read_text()
    assert "csbs_orchestrator_run_exit_code 0" in gauges
    assert 'csbs_orchestrator_coverage_resources{destination_region="cn-south-1"' in gauges
    assert "csbs_orchestrator_coverage_timestamp_seconds" in gauges


def test_coverage_options_from_flags_and_config() -> None:
    parser = build_parser()
    args = parser.parse_args(["schedule", "--once", "--state-dir", "s", "--coverage"])
    assert ScheduleOptions.resolve(args, {}).coverage_rpo_s == 26 * 3600
    args = parser.parse_args(["schedule", "--once", "--state-dir", "s", "--rpo", "2d"])
    assert ScheduleOptions.resolve(args, {}).coverage_rpo_s is None  # --rpo alone: off
    on = {"schedule": {"coverage": True, "rpo": "30h"}}
    assert ScheduleOptions.resolve(args, on).coverage_rpo_s == 2 * 86400  # the flag wins
    args = parser.parse_args(["schedule", "--once", "--state-dir", "s"])
    assert ScheduleOptions.resolve(args, on).coverage_rpo_s == 30 * 3600
    with pytest.raises(ConfigError, match="schedule rpo"):
        ScheduleOptions.resolve(args, {"schedule": {"coverage": True, "rpo": "soon"}})
