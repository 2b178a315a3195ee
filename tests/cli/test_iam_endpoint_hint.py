"""An IAM endpoint given with a path (``.../v3``, as many examples spell it) makes the token
call a 404: the error must name ``--iam-endpoint`` and its expected form, not send the
operator to check ``--endpoint`` (the CSBS URL, which is right)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli.main import main
from orchestrator.exitcodes import ExitCode
from orchestrator.simulator.csbs import CAPABILITIES
from tests.helpers.manifests import write_manifest
from tests.helpers.simthread import simulator_thread


def test_an_iam_endpoint_with_a_path_is_a_usage_error_naming_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with simulator_thread(items=10, seed=2, auth="token") as sim:
        for name in ("HUAWEICLOUD_SDK_AK", "HUAWEICLOUD_SDK_SK", "CSBS_AUTH_TOKEN"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("CSBS_IAM_PASSWORD", sim.config.password)
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
        config = tmp_path / "c.toml"
        config.write_text(f'[auth]\nuser = "{sim.config.user}"\ndomain = "{sim.config.domain}"\n')
        argv = ["plan", "--manifest", str(manifest), "--config", str(config),
                "--endpoint", sim.base_url, "--iam-endpoint", f"{sim.base_url}/v3"]  # fmt: skip
        assert main(argv) == ExitCode.USAGE
        assert sim.counters.requests_for(CAPABILITIES, 200) == 0
    err = capsys.readouterr().err
    assert "--iam-endpoint" in err
    assert "check --endpoint" not in err
    assert "internal error" not in err
    assert sim.config.password not in err
