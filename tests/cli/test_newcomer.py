"""What a first-time user meets: the demo's coverage step, a typo in a ``[simulator]`` knob,
no credentials at all, a bad flag value, and ``--help``. Each gives a clear message and the
documented exit code (docs/running.md#exit-codes), never a traceback."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestrator.cli.main import main
from orchestrator.exitcodes import ExitCode
from tests.helpers.manifests import make_rows, write_manifest


def _config(tmp_path: Path, simulator: str = "items = 40") -> Path:
    path = tmp_path / "c.toml"
    path.write_text(f'[connection]\nregion = "cn-north-1"\n\n[simulator]\n{simulator}\n')
    return path


def test_coverage_sim_age_days_ages_the_simulated_estate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`make demo`'s last step: without the flag reaching the simulator, the estate's backups
    were from 2024 and nothing could be covered."""
    out = tmp_path / "coverage.json"
    argv = ["coverage", "--simulate", "--config", str(_config(tmp_path)), "--rpo", "26h"]
    argv += ["--region-to", "cn-east-2", "--sim-age-days", "7", "--format", "json", "-o", str(out)]
    code = main([*argv, "--log-level", "error"])
    assert code in (ExitCode.OK, ExitCode.FAILED)
    rows = json.loads(out.read_text())["rows"]
    newest = max(
        datetime.fromisoformat(r["newest_backup_at"]) for r in rows if r["newest_backup_at"]
    )
    assert datetime.now(UTC) - newest < timedelta(days=8)
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("knob", "said"),
    [
        ("p503x = 0.1", "unknown knob(s) 'p503x'; did you mean 'p503'?"),
        ('p503 = "often"', "p503 must be a number, got 'often'"),
    ],
)
@pytest.mark.parametrize("command", ["run", "coverage"])
def test_a_bad_simulator_knob_is_a_configuration_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], knob: str, said: str, command: str
) -> None:
    config = _config(tmp_path, knob)
    if command == "run":
        manifest = tmp_path / "m.csv"
        write_manifest(manifest, make_rows(3))
        extra = ["--manifest", str(manifest), "--ledger", str(tmp_path / "l.jsonl")]
    else:
        extra = ["--rpo", "26h", "--region-to", "cn-east-2"]
    code = main([command, "--simulate", "--config", str(config), *extra])
    err = capsys.readouterr().err
    assert code == ExitCode.USAGE
    assert f"{config}: [simulator]: {said}" in err
    assert "internal error" not in err
    assert not (tmp_path / "l.jsonl").exists()


def test_no_credentials_lists_every_source_on_its_own_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in (
        "HUAWEICLOUD_SDK_AK",
        "HUAWEICLOUD_SDK_SK",
        "CSBS_AUTH_TOKEN",
        "CSBS_IAM_PASSWORD",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CSBS_METADATA_URL", "off")
    manifest = tmp_path / "m.csv"
    write_manifest(manifest, make_rows(3))
    argv = ["run", "--manifest", str(manifest), "--ledger", str(tmp_path / "l.jsonl")]
    code = main([*argv, "--endpoint", "http://127.0.0.1:1", "--project-id", "a" * 32])
    err = capsys.readouterr().err
    assert code == ExitCode.USAGE
    assert "\\x0a" not in err  # the list as docs/credentials.md shows it, not escaped
    assert "tried, in order:\n  - environment: " in err
    assert "\n  - ECS metadata: skipped" in err


def test_a_bad_flag_value_is_named_once(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["run", "--manifest", "m.csv", "--ledger", "l.jsonl", "--rate", "fast"])
    err = capsys.readouterr().err
    assert exited.value.code == ExitCode.USAGE
    assert "argument --rate: must be a number of requests per second, or auto (got 'fast')" in err
    assert err.count("'fast'") == 1


def test_help_spells_defaults_as_the_docs_do(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: None)" not in text
    assert "(default: True)" not in text
    assert "--adaptive ADAPTIVE adapt per-region concurrency" in text
    assert "(true/false; 429s: --pace) (default: true)" in text
    assert "--state-file STATE_FILE remember the learned per-region limits here for the " in text
    assert "next run (default: none)" in text
    assert "(flag) / on (config verify_tls)" not in text  # --insecure says what it does
    assert "(config: verify_tls = false)" in text


def test_coverage_refuses_a_bad_at_naming_the_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    said = "--at 'yesterday': an ISO time"
    argv = ["coverage", "--simulate", "--config", str(_config(tmp_path)), "--rpo", "26h"]
    code = main([*argv, "--region-to", "cn-east-2", "--at", "yesterday"])
    err = capsys.readouterr().err
    assert code == ExitCode.USAGE
    assert said in err
    assert "created since" not in err


def test_a_misspelt_flag_gets_the_command_usage_and_the_closest_flag(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["run", "--manifest", "m.csv", "--ledger", "l.jsonl", "--concurency", "3"])
    err = capsys.readouterr().err
    assert exited.value.code == ExitCode.USAGE
    assert "usage: csbs-orchestrator run " in err  # the command's usage, not the program's
    assert "csbs-orchestrator run: error: unrecognized arguments: --concurency 3; " in err
    assert "did you mean --concurrency?" in err


def test_a_misspelt_flag_is_named_before_a_required_one_is_missed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The misspelt --manifest is the user's mistake; "--ledger is required" hid it.
    with pytest.raises(SystemExit) as exited:
        main(["run", "--manifst", "m.csv"])
    err = capsys.readouterr().err
    assert exited.value.code == ExitCode.USAGE
    assert "unrecognized arguments: --manifst m.csv; did you mean --manifest?" in err
    assert "required" not in err


def test_an_abbreviated_flag_still_parses() -> None:
    from orchestrator.cli.main import build_parser

    args = build_parser().parse_args(["plan", "--manif", "m.csv"])
    assert args.manifest == "m.csv"
