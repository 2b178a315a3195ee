"""``report`` shows the last run by default. After a ``resume`` that found everything done,
that run has no pairs: the table says so and how to see them (``--run all``), instead of an
empty table that reads as "nothing was ever replicated"."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli.main import main
from orchestrator.exitcodes import ExitCode
from tests.helpers.env import use_sim_credentials
from tests.helpers.manifests import write_manifest
from tests.helpers.simthread import simulator_thread


def test_report_of_a_last_run_that_sent_nothing_points_at_run_all(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest, ledger = tmp_path / "m.csv", tmp_path / "l.jsonl"
    with simulator_thread(items=10, seed=7) as sim:
        use_sim_credentials(monkeypatch, sim)
        project = sim.state.projects[0]
        items = [i.id for i in sim.state.items_of(project.id) if i.status == "available"][:2]
        rows = [
            {
                "checkpoint_item_id": item,
                "project_id": project.id,
                "source_region": project.region,
                "destination_region": "cn-east-2",
                "destination_project_id": sim.state.destination_projects["cn-east-2"],
            }
            for item in items
        ]
        write_manifest(manifest, rows)
        common = ["--ledger", str(ledger), "--endpoint", sim.base_url, "--no-progress"]
        assert main(["run", "--manifest", str(manifest), *common]) == ExitCode.OK
        assert main(["resume", *common]) == ExitCode.OK
    capsys.readouterr()
    assert main(["report", str(ledger)]) == ExitCode.OK
    table = capsys.readouterr().out
    assert "last run, 1 run(s), 0 pair(s)" in table
    assert "--run all" in table
    assert main(["report", str(ledger), "--run", "all"]) == ExitCode.OK
    everything = capsys.readouterr().out
    assert "2 pair(s)" in everything
    assert "--run all" not in everything
