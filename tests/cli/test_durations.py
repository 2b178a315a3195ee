"""Duration settings (``--max-duration``, ``--retry-time``, ``--grace-period``,
``--unreachable-after``, ``--request-timeout``, ``--reconcile-skew`` and their config keys)
take a unit (``90s``, ``30m``, ``6h``, ``1d``; a plain number is seconds), and a refused
value says so; the ledger keeps recording seconds."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli.main import main
from orchestrator.exitcodes import ExitCode
from tests.helpers.ledger_records import read_all
from tests.helpers.manifests import make_rows, write_manifest


def _run(tmp_path: Path, config: str, *flags: str) -> tuple[int, Path]:
    path = tmp_path / "c.toml"
    path.write_text(f'[connection]\nregion = "cn-north-1"\n\n{config}\n')
    manifest = tmp_path / "m.csv"
    write_manifest(manifest, make_rows(3))
    ledger = tmp_path / "l.jsonl"
    argv = ["run", "--simulate", "--config", str(path), "--manifest", str(manifest)]
    code = main([*argv, "--ledger", str(ledger), "--log-level", "error", *flags])
    return code, ledger


def test_durations_take_a_unit_and_the_ledger_records_seconds(tmp_path: Path) -> None:
    flags = ["--max-duration", "6h", "--grace-period", "90s", "--request-timeout", "2m"]
    flags += ["--reconcile-skew", "1d", "--unreachable-after", "30"]
    code, ledger = _run(tmp_path, '[retry]\nmax_elapsed = "30m"\n', *flags)
    assert code in (ExitCode.OK, ExitCode.FAILED)  # the rows are made up: the pairs fail
    (started,) = [r for r in read_all(ledger) if r["event"] == "run_started"]
    recorded = started["settings"]
    assert recorded["max_duration"] == 6 * 3600.0
    assert recorded["grace_period"] == 90.0
    assert recorded["request_timeout"] == 120.0
    assert recorded["reconcile_skew"] == 86400.0
    assert recorded["unreachable_after"] == 30.0
    assert recorded["retry_time"] == 1800.0


def test_a_refused_duration_says_seconds_or_a_unit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        _run(tmp_path, "", "--retry-time", "6 hours")
    assert exited.value.code == ExitCode.USAGE
    err = capsys.readouterr().err
    assert "--retry-time: must be a number of seconds, or with a unit: 90s, 30m, 6h" in err
    code, _ = _run(tmp_path, '[run]\nmax_duration = "6x"\n')
    assert code == ExitCode.USAGE
    assert "must be a number of seconds, or with a unit: 90s, 30m, 6h" in capsys.readouterr().err


def test_help_says_a_duration_may_have_a_unit(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "seconds, or 30m/6h, after which no new pair starts" in text
