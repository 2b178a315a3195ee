"""``schedule --once`` leaves the timing to the platform, so it needs no cron and no time
zone; but one that it is given (a flag, or ``[schedule]`` in the config) is checked as the
long-running ``schedule`` checks it: a typo is exit 2 before anything is listed or sent,
not ignored until the day the deployment moves to the built-in scheduler."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli.main import main
from orchestrator.exitcodes import ExitCode

SIM = ["--simulate", "--region", "cn-north-1", "--log-level", "error", "--log-format", "json"]
TO_SOUTH = ["--to", "cn-south-1=95bf705ea7424d84d1073b5fb8d7fdf5"]


@pytest.fixture(autouse=True)
def _quiet_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HUAWEICLOUD_SDK_AK", "HUAWEICLOUD_SDK_SK", "CSBS_AUTH_TOKEN"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    ("given", "needle"),
    [
        (["--tz", "Europe/Berln"], "Europe/Berln"),
        (["--cron", "0 2 * *"], "0 2 * *"),
        (["--cron", "0 2 * * *", "--tz", "Mars/Base"], "Mars/Base"),
    ],
)
def test_schedule_once_refuses_a_bad_cron_or_time_zone_it_was_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], given: list[str], needle: str
) -> None:
    state = tmp_path / "state"
    code = main(["schedule", "--once", "--state-dir", str(state), *TO_SOUTH, *SIM, *given])
    assert code == ExitCode.USAGE
    captured = capsys.readouterr()
    assert needle in captured.err
    assert "firing " not in captured.out
    assert not list(state.glob("ledger-*.jsonl"))


def test_schedule_once_with_a_good_cron_and_time_zone_fires(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    given = ["--cron", "0 2 * * *", "--tz", "Europe/Berlin"]
    code = main(["schedule", "--once", "--state-dir", str(state), *TO_SOUTH, *SIM, *given])
    assert code == ExitCode.OK
    assert "firing " in capsys.readouterr().out
