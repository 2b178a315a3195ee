"""With ``--log-format json`` stderr is a stream of JSON events, so that it can be piped into
``jq`` or a log shipper: the reason a command ended is one more event of that stream
(``command.failed`` with the message and the exit code), never a line of prose that breaks
the parser and leaves the stream without the reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.cli.main import main
from orchestrator.exitcodes import ExitCode
from orchestrator.simulator.csbs import CAPABILITIES
from tests.helpers.env import use_sim_credentials
from tests.helpers.manifests import write_manifest
from tests.helpers.simthread import simulator_thread


def _events(err: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in err.splitlines() if line.strip()]  # each line is JSON


def test_a_usage_error_is_a_json_event(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing.csv"
    argv = ["run", "--simulate", "--manifest", str(missing), "--ledger",
            str(tmp_path / "l.jsonl"), "--log-format", "json"]  # fmt: skip
    assert main(argv) == ExitCode.USAGE
    last = _events(capsys.readouterr().err)[-1]
    assert last["event"] == "command.failed"
    assert last["level"] == "error"
    assert last["exit_code"] == ExitCode.USAGE
    assert f"{missing}: cannot open" in str(last["error"])


def test_refused_credentials_are_a_json_event_without_the_secret(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with simulator_thread(items=10, seed=6) as sim:
        use_sim_credentials(monkeypatch, sim)
        monkeypatch.setenv("HUAWEICLOUD_SDK_SK", "not-the-simulators-secret-key")
        project = sim.state.projects[0]
        item = next(i.id for i in sim.state.items_of(project.id) if i.status == "available")
        manifest = tmp_path / "m.csv"
        write_manifest(
            manifest,
            [
                {
                    "checkpoint_item_id": item,
                    "project_id": project.id,
                    "source_region": project.region,
                    "destination_region": "cn-east-2",
                    "destination_project_id": sim.state.destination_projects["cn-east-2"],
                }
            ],
        )
        argv = ["run", "--manifest", str(manifest), "--ledger", str(tmp_path / "l.jsonl"),
                "--endpoint", sim.base_url, "--log-format", "json"]  # fmt: skip
        assert main(argv) == ExitCode.AUTH
        assert sim.counters.requests_for(CAPABILITIES, 401) == 1
    err = capsys.readouterr().err
    assert "not-the-simulators-secret-key" not in err
    last = _events(err)[-1]
    assert last["event"] == "command.failed"
    assert last["exit_code"] == ExitCode.AUTH
    assert "credentials refused" in str(last["error"])


@pytest.mark.parametrize("log_format", ["json", "console"])
def test_the_log_file_ends_with_the_failure_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], log_format: str
) -> None:
    """--log-file is JSON lines whatever stderr's format: it ends with why the command
    ended, as stderr's JSON stream does, not with the last event before the error."""
    missing = tmp_path / "missing.csv"
    log = tmp_path / "run.log"
    argv = ["run", "--simulate", "--manifest", str(missing), "--ledger", str(tmp_path / "l.jsonl"),
            "--log-format", log_format, "--log-file", str(log)]  # fmt: skip
    assert main(argv) == ExitCode.USAGE
    err = capsys.readouterr().err
    last = _events(log.read_text())[-1]
    assert last["event"] == "command.failed"
    assert last["exit_code"] == ExitCode.USAGE
    assert f"{missing}: cannot open" in str(last["error"])
    if log_format == "json":
        assert _events(err)[-1] == last
    else:
        assert f"csbs-orchestrator: error: manifest: {missing}: cannot open" in err


def test_the_failure_in_the_log_file_is_scrubbed_of_secrets(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = "not-the-simulators-secret-key"
    # The manifest's path quotes the secret: the message naming it must not.
    missing = tmp_path / f"{secret}.csv"
    monkeypatch.setenv("HUAWEICLOUD_SDK_AK", "AKEXAMPLE")
    monkeypatch.setenv("HUAWEICLOUD_SDK_SK", secret)
    log = tmp_path / "run.log"
    argv = ["run", "--simulate", "--manifest", str(missing), "--ledger", str(tmp_path / "l.jsonl"),
            "--log-format", "json", "--log-file", str(log)]  # fmt: skip
    assert main(argv) == ExitCode.USAGE
    capsys.readouterr()
    last = _events(log.read_text())[-1]
    assert last["event"] == "command.failed"
    assert secret not in log.read_text()
