"""A misspelt class in ``[errors.codes]`` is refused by every command that reads the config,
naming the file and the section, before anything is sent."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli.main import main
from orchestrator.exitcodes import ExitCode
from orchestrator.simulator.csbs import CAPABILITIES
from tests.helpers.env import use_sim_credentials
from tests.helpers.manifests import write_manifest
from tests.helpers.simthread import simulator_thread


def test_plan_names_the_file_of_a_misspelt_error_class(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "prod.toml"
    config.write_text('[errors.codes]\n"CSBS.9999" = "transiant"\n')
    with simulator_thread(items=10, seed=9) as sim:
        use_sim_credentials(monkeypatch, sim)
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
        argv = ["plan", "--manifest", str(manifest), "--endpoint", sim.base_url,
                "--config", str(config)]  # fmt: skip
        assert main(argv) == ExitCode.USAGE
        assert sim.counters.requests_for(CAPABILITIES, 200) == 0
    err = capsys.readouterr().err
    assert f"{config}: [errors.codes]" in err
    assert "'transiant'" in err
