"""The command context: the --config file is read once per command, whatever reads it
(settings, [discover], [schedule], [simulator]); the secrets live on the context."""

from __future__ import annotations

import argparse
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from orchestrator.cli.context import context_of
from orchestrator.cli.main import main
from orchestrator.exitcodes import ExitCode

QUIET = ["--log-level", "error", "--log-format", "json"]


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every TOML file the process parses, by name."""
    seen: list[str] = []
    real: Callable[..., dict[str, Any]] = tomllib.load

    def counting(handle: BinaryIO, **kwargs: Any) -> dict[str, Any]:
        seen.append(str(getattr(handle, "name", "?")))
        return real(handle, **kwargs)

    monkeypatch.setattr(tomllib, "load", counting)
    for name in ("HUAWEICLOUD_SDK_AK", "HUAWEICLOUD_SDK_SK", "CSBS_AUTH_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return seen


def _config(tmp_path: Path) -> Path:
    """Every section a command reads: settings, [discover], [schedule], [simulator]."""
    path = tmp_path / "c.toml"
    path.write_text(
        '[connection]\nregion = "cn-north-1"\n'
        "[limits]\nconcurrency = 8\n"
        '[discover]\nselect = "all"\n'
        "[[discover.rules]]\n"
        'to = [{ region = "cn-south-1", project_id = "95bf705ea7424d84d1073b5fb8d7fdf5" }]\n'
        f'[schedule]\nstate_dir = "{tmp_path / "s"}"\nkeep_ledgers = 3\n'
        "[simulator]\nitems = 6\n"
    )
    return path


def _commands(tmp_path: Path, config: Path) -> dict[str, list[str]]:
    manifest = tmp_path / "found.csv"
    common = ["--config", str(config), "--simulate", *QUIET]
    run = [*common, "--no-progress"]
    return {  # in this order: run sends the pairs discover wrote
        "discover": ["discover", "-o", str(manifest), *common],
        "run": ["run", "--manifest", str(manifest), "--ledger", str(tmp_path / "r.jsonl"), *run],
        "run --discover": ["run", "--discover", "--ledger", str(tmp_path / "d.jsonl"), *run],
        "plan": ["plan", "--manifest", str(manifest), *common],
        "schedule --once": ["schedule", "--once", "--coverage", *run],
        "coverage": ["coverage", "--rpo", "26h", "-o", str(tmp_path / "cov.txt"), *common],
    }


def test_every_command_reads_the_config_file_once(tmp_path: Path, reads: list[str]) -> None:
    config = _config(tmp_path)
    for name, argv in _commands(tmp_path, config).items():
        reads.clear()
        code = main(argv)
        assert code in (ExitCode.OK, ExitCode.FAILED), name
        assert reads == [str(config)], f"{name}: read {len(reads)} times"


def test_config_check_reads_the_file_once(
    tmp_path: Path, reads: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path)
    assert main(["config", "check", "--config", str(config)]) == ExitCode.OK
    assert reads == [str(config)]
    assert "concurrency" in capsys.readouterr().out


def test_the_context_holds_the_secrets_and_the_simulator_not_the_namespace(
    tmp_path: Path, reads: list[str]
) -> None:
    args = argparse.Namespace(config=str(_config(tmp_path)), simulate=True, sim_seed=3)
    ctx = context_of(args, env={"CSBS_IAM_PASSWORD": "pw-in-the-env"})
    assert ctx.simulator is not None
    assert (ctx.simulator.items, ctx.simulator.seed) == (6, 3)  # [simulator], --sim-seed on top
    scrubbed = ctx.secrets.scrub(f"{ctx.simulator.sk} pw-in-the-env")
    assert ctx.simulator.sk not in scrubbed
    assert "pw-in-the-env" not in scrubbed
    assert not hasattr(args, "secret_set")
    assert ctx.config["limits"] == {"concurrency": 8}
    assert ctx.settings.limits.concurrency == 8
    assert reads == [args.config]


def test_config_without_an_action_names_the_actions_and_exits_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["config"]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert "check" in err
    assert "Traceback" not in err


def test_recorded_settings_sit_below_the_file_and_bring_no_tables(
    tmp_path: Path, reads: list[str]
) -> None:
    """``resume``/``track``: the ledger's settings under the file; its endpoints table and
    error codes are not carried over (the file and the flags decide those)."""
    args = argparse.Namespace(config=str(_config(tmp_path)), simulate=False)
    recorded = {
        "concurrency": 3,
        "per_region": 5,
        "endpoints": {"cn-north-1": "https://old.example"},
        "error_codes": {"X.1": "transient"},
    }
    ctx = context_of(args, recorded, env={})
    assert ctx.settings.limits.concurrency == 8  # the file's, over the recorded 3
    assert ctx.settings.limits.per_region == 5  # the recorded, over the default
    assert dict(ctx.settings.connection.endpoints) == {}
    assert dict(ctx.settings.errors.error_codes) == {}
    assert ctx.simulator is None
