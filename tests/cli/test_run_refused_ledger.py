"""A ``run`` refused before it records anything (the preflight's refused credentials, an
endpoint nothing listens on) leaves no ledger file it created, and never touches a ledger
that was there before. Through the CLI (``main(argv)``) against a simulator on loopback."""

from __future__ import annotations

import csv
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.cli.main import main
from orchestrator.exitcodes import ExitCode
from orchestrator.ledger.file import iter_records
from orchestrator.simulator import Simulator
from orchestrator.simulator.sample import MANIFEST_COLUMNS, estate_rows
from tests.helpers.env import use_sim_credentials
from tests.helpers.simthread import simulator_thread

CONFIG = "[retry]\nbase_delay = 0.001\nmax_delay = 0.01\n"


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with simulator_thread(items=20, seed=5) as served:
        yield served


def _argv(
    sim: Simulator, tmp_path: Path, ledger: Path, endpoint: str | None = None, rows: int = 3
) -> list[str]:
    manifest = tmp_path / "m.csv"
    with manifest.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, MANIFEST_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(estate_rows(sim.state, limit=rows))
    config = tmp_path / "config.toml"
    config.write_text(CONFIG, encoding="utf-8")
    return [
        "run",
        "--manifest",
        str(manifest),
        "--ledger",
        str(ledger),
        "--endpoint",
        endpoint or sim.base_url,
        "--config",
        str(config),
        "--retry-time",
        "0.2",
        "--no-progress",
        "--log-format",
        "json",
    ]


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_refused_credentials_leave_no_ledger_file(
    sim: Simulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    use_sim_credentials(monkeypatch, sim)
    monkeypatch.setenv("HUAWEICLOUD_SDK_SK", "this-is-not-the-secret-key-0123456789")
    ledger = tmp_path / "new.jsonl"
    code = main(_argv(sim, tmp_path, ledger))
    err = capfd.readouterr().err
    assert code == ExitCode.AUTH
    assert "credentials refused" in err
    assert not ledger.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml", "m.csv"]


def test_an_unreachable_endpoint_leaves_no_ledger_file(
    sim: Simulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    use_sim_credentials(monkeypatch, sim)
    ledger = tmp_path / "new.jsonl"
    code = main(_argv(sim, tmp_path, ledger, f"http://127.0.0.1:{_closed_port()}"))
    err = capfd.readouterr().err
    assert code == ExitCode.GAVE_UP
    assert "service unreachable" in err
    assert not ledger.exists()


@pytest.mark.parametrize("earlier_run", [False, True])
def test_a_ledger_that_was_there_is_kept_as_it_was(
    sim: Simulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    earlier_run: bool,
) -> None:
    """Even an empty one: the run did not create it, so it is not the run's to remove."""
    use_sim_credentials(monkeypatch, sim)
    ledger = tmp_path / "old.jsonl"
    if earlier_run:
        assert main(_argv(sim, tmp_path, ledger)) in {ExitCode.OK, ExitCode.FAILED}
    else:
        ledger.touch()
    before = ledger.read_bytes()
    monkeypatch.setenv("HUAWEICLOUD_SDK_SK", "this-is-not-the-secret-key-0123456789")
    code = main(_argv(sim, tmp_path, ledger, rows=6))  # pairs the earlier run did not do
    capfd.readouterr()
    assert code == ExitCode.AUTH
    assert ledger.read_bytes() == before


def test_a_refused_run_then_a_good_one_records_one_run(
    sim: Simulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    use_sim_credentials(monkeypatch, sim)
    ledger = tmp_path / "l.jsonl"
    monkeypatch.setenv("HUAWEICLOUD_SDK_SK", "this-is-not-the-secret-key-0123456789")
    assert main(_argv(sim, tmp_path, ledger)) == ExitCode.AUTH
    monkeypatch.setenv("HUAWEICLOUD_SDK_SK", sim.config.sk)
    assert main(_argv(sim, tmp_path, ledger)) in {ExitCode.OK, ExitCode.FAILED}
    capfd.readouterr()
    events = [record["event"] for record in iter_records(ledger)]
    assert events[0] == "run_started"
    assert events.count("run_started") == 1
