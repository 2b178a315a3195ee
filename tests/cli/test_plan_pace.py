"""``plan``'s GETs are paced and what they learn is kept: against a simulator whose gateway
throttles every call of a project, a CBR plan of many destination vaults of one project
learns that project's rate and saves it to the ``--state-file``; the next plan starts at it,
and its vault checks are barely refused."""

from __future__ import annotations

import csv
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from orchestrator.cli.main import main
from orchestrator.simulator import Simulator
from orchestrator.simulator.cbr import SHOW_VAULT
from orchestrator.simulator.sample import CBR_MANIFEST_COLUMNS
from tests.helpers.env import use_sim_credentials
from tests.helpers.simthread import simulator_thread

SOURCE, DEST = "cn-north-1", "cn-east-3"
RATE = 40.0  # the gateway's rate per project, every call; the burst 1
VAULTS = 16


@pytest.fixture
def sim(monkeypatch: pytest.MonkeyPatch) -> Iterator[Simulator]:
    knobs: dict[str, Any] = {"items": 120, "seed": 5, "faults_on": "all"}
    with simulator_thread(**knobs, throttle_rate=RATE, throttle_burst=1) as served:
        use_sim_credentials(monkeypatch, served)
        yield served


def _manifest(sim: Simulator, path: Path) -> str:
    """A backup per vault, each to its own (unknown) vault of one destination project."""
    project = next(p for p in sim.state.projects if p.region == SOURCE)
    dest = sim.state.destination_projects[DEST]
    backups = [i.id for i in sim.state.items_of(project.id) if i.status == "available"]
    assert len(backups) >= VAULTS
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, CBR_MANIFEST_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for n, backup in enumerate(backups[:VAULTS]):
            writer.writerow(
                {
                    "backup_id": backup,
                    "project_id": project.id,
                    "source_region": SOURCE,
                    "destination_region": DEST,
                    "destination_project_id": dest,
                    "destination_vault_id": str(uuid.UUID(int=n + 1, version=4)),
                }
            )
    return dest


def _plan(sim: Simulator, manifest: Path, state: Path, capsys: Any) -> dict[str, Any]:
    capsys.readouterr()
    argv = ["plan", "--json", "--service", "cbr", "--manifest", str(manifest)]
    main([*argv, "--endpoint", sim.base_url, "--state-file", str(state)])
    out, err = capsys.readouterr()
    assert out, err
    doc: dict[str, Any] = json.loads(out)
    return doc


def _refused(sim: Simulator) -> int:
    return sim.counters.requests_for(SHOW_VAULT, 429)


def test_plan_paces_its_vault_checks_and_saves_what_it_learned(
    sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest, state = tmp_path / "m.csv", tmp_path / "state.json"
    dest = _manifest(sim, manifest)

    first = _plan(sim, manifest, state, capsys)  # nothing known: learns from the 429s
    assert first["vaults_checked"] == VAULTS
    refused_first = _refused(sim)
    assert refused_first >= 1
    saved = orjson.loads(state.read_bytes())["pace"]
    label = f"{DEST}/{dest}"
    assert label in saved  # the vault checks' key: the destination region and project
    assert 0 < saved[label] < RATE * 1.5

    second = _plan(sim, manifest, state, capsys)  # starts at what the first learned
    refused_second = _refused(sim) - refused_first
    print(f"plan: {refused_first} then {refused_second} of {VAULTS} vault checks refused")
    assert refused_second <= 2
    assert len(second["vaults_unchecked"]) <= 2
    assert len(second["vault_problems"]) >= VAULTS - 2  # every vault asked: none exists
