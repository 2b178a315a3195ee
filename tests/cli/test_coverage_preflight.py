"""``coverage`` proves the connection with one request first, as ``plan``, ``discover``,
``schedule`` and ``track`` do (docs/operator-safety.md): a service never reached stops after
``--unreachable-after`` with the preflight's advice, and a ``--region-to`` that no source
region replicates to is named instead of reported as every resource "never copied"."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.cli.main import main
from orchestrator.exitcodes import ExitCode
from orchestrator.simulator import Simulator
from orchestrator.simulator.csbs import CAPABILITIES
from tests.cli.test_operator_safety import closed_port_url
from tests.helpers.env import use_sim_credentials
from tests.helpers.simthread import simulator_thread


@pytest.fixture
def sim(monkeypatch: pytest.MonkeyPatch) -> Iterator[Simulator]:
    with simulator_thread(items=30, seed=5) as sim:
        use_sim_credentials(monkeypatch, sim)
        yield sim


def _argv(sim: Simulator, *extra: str) -> list[str]:
    project = sim.state.projects[0]
    return ["coverage", "--rpo", "26h", "--project-id", project.id, "--region", project.region,
            "--log-level", "error", *extra]  # fmt: skip


def test_coverage_of_a_service_never_reached_stops_after_unreachable_after(
    sim: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    region = sim.state.capabilities()[sim.state.projects[0].region][0]
    config = tmp_path / "c.toml"  # few listing retries: the test stays short either way
    config.write_text("[retry]\nmax_attempts = 2\nbase_delay = 0.05\n")
    argv = _argv(sim, "--region-to", region, "--endpoint", closed_port_url(),
                 "--unreachable-after", "0.1", "--config", str(config))  # fmt: skip
    started = time.monotonic()
    assert main(argv) == ExitCode.GAVE_UP
    assert time.monotonic() - started < 3
    err = capsys.readouterr().err
    assert "service unreachable: no answer from the service" in err
    assert "check --endpoint" in err


def test_coverage_names_a_region_to_that_no_source_replicates_to(
    sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = _argv(sim, "--region-to", "cn-eats-2", "--endpoint", sim.base_url)
    assert main(argv) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert "cn-eats-2" in err
    assert "replicates to" in err
    assert sim.counters.requests_for(CAPABILITIES, 200) == 1


def test_coverage_of_a_good_region_still_judges_it(
    sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    region = sim.state.capabilities()[sim.state.projects[0].region][0]
    code = main(_argv(sim, "--region-to", region, "--endpoint", sim.base_url))
    assert code in (ExitCode.OK, ExitCode.FAILED)
    assert "pairs" in capsys.readouterr().out
