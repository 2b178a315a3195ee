"""A ``--ledger`` path that cannot be a ledger is exit 8 before anything is sent, with the
same words whichever command meets it: a directory is "a directory, not a regular file" for
``run`` as for ``plan`` and ``report``, and a missing folder is named as such."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.cli.main import main
from orchestrator.exitcodes import ExitCode
from orchestrator.simulator import Simulator
from orchestrator.simulator.csbs import REPLICATE
from tests.helpers.env import use_sim_credentials
from tests.helpers.manifests import write_manifest
from tests.helpers.simthread import simulator_thread


@pytest.fixture
def sim(monkeypatch: pytest.MonkeyPatch) -> Iterator[Simulator]:
    with simulator_thread(items=10, seed=8) as sim:
        use_sim_credentials(monkeypatch, sim)
        yield sim


def _manifest(sim: Simulator, path: Path) -> Path:
    project = sim.state.projects[0]
    item = next(i.id for i in sim.state.items_of(project.id) if i.status == "available")
    row = {
        "checkpoint_item_id": item,
        "project_id": project.id,
        "source_region": project.region,
        "destination_region": "cn-east-2",
        "destination_project_id": sim.state.destination_projects["cn-east-2"],
    }
    write_manifest(path, [row])
    return path


def _run(sim: Simulator, tmp_path: Path, ledger: Path) -> list[str]:
    manifest = _manifest(sim, tmp_path / "m.csv")
    return ["run", "--manifest", str(manifest), "--ledger", str(ledger),
            "--endpoint", sim.base_url, "--no-progress"]  # fmt: skip


def test_run_on_a_ledger_that_is_a_directory_says_so(
    sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ledger = tmp_path / "ledger.jsonl"
    ledger.mkdir()
    assert main(_run(sim, tmp_path, ledger)) == ExitCode.LEDGER
    err = capsys.readouterr().err
    assert f"{ledger}: cannot open the ledger: a directory, not a regular file" in err
    assert sim.counters.requests_for(REPLICATE, 200) == 0


def test_run_on_a_ledger_in_a_missing_folder_names_the_folder(
    sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "no-such-folder"
    ledger = folder / "ledger.jsonl"
    assert main(_run(sim, tmp_path, ledger)) == ExitCode.LEDGER
    err = capsys.readouterr().err
    assert f"{ledger}: cannot open the ledger: the folder {folder} does not exist" in err
    assert sim.counters.requests_for(REPLICATE, 200) == 0
    assert not folder.exists()
