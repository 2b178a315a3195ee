"""``discover --service cbr`` never sends a backup that is itself a replica: CBR marks one
with ``image_type: replication`` (``BackupResp``; CBR has no ``extend_info.copy_from``). The
simulator's CBR face shows a share of its backups so (``replica_share``); through the CLI."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.cli.main import main
from orchestrator.exitcodes import ExitCode
from orchestrator.simulator import Simulator
from orchestrator.simulator.cbr_views import image_type, vault_id
from tests.cli.test_operator_safety import _clean_env  # noqa: F401 - autouse here too
from tests.helpers.env import use_sim_credentials
from tests.helpers.simthread import simulator_thread


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with simulator_thread(items=40, seed=11, replica_share=0.4) as served:
        yield served


def _discover(sim: Simulator, tmp_path: Path, *, include_replicas: bool = False) -> set[str]:
    project = sim.state.projects[0]
    dest_region = sim.state.capabilities()[project.region][0]
    dest = sim.state.destination_projects[dest_region]
    config = tmp_path / "cbr.toml"
    config.write_text(
        f"[discover]\ninclude_replicas = {str(include_replicas).lower()}\n"
        f'[[discover.sources]]\nproject_id = "{project.id}"\nregion = "{project.region}"\n'
        f'[[discover.rules]]\nto = [{{ region = "{dest_region}", project_id = "{dest}" }}]\n'
        f'[discover.cbr]\ndestination_vaults = {{ "{dest_region}" = '
        f'"{vault_id(dest, dest_region)}" }}\n',
        encoding="utf-8",
    )
    out = tmp_path / "pairs.csv"
    argv = ["discover", "--service", "cbr", "--config", str(config), "--endpoint"]
    code = main([*argv, sim.base_url, "--output", str(out), "--log-format", "json"])
    assert code == ExitCode.OK
    with out.open(encoding="utf-8") as handle:
        return {row["backup_id"] for row in csv.DictReader(handle)}


def _sendable(sim: Simulator) -> tuple[set[str], set[str]]:
    """The source project's available backups with no copy in the first destination yet:
    (the ones shown as backups, the ones shown as replicas)."""
    project = sim.state.projects[0]
    dest_region = sim.state.capabilities()[project.region][0]
    fresh = [
        item
        for item in sim.state.items_of(project.id)
        if item.status == "available" and sim.state.latest_record(item.id, dest_region) is None
    ]
    share = sim.state.config.replica_share
    replicas = {i.id for i in fresh if image_type(i, share) == "replication"}
    return {i.id for i in fresh} - replicas, replicas


def test_cbr_discovery_skips_backups_that_are_replicas(
    sim: Simulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    use_sim_credentials(monkeypatch, sim)
    backups, replicas = _sendable(sim)
    assert backups, "the estate should show both kinds"
    assert replicas, "the estate should show both kinds"
    found = _discover(sim, tmp_path)
    assert found == backups
    assert f"({len(replicas)} replicas ignored)" in capsys.readouterr().out


def test_include_replicas_sends_them_too(
    sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_sim_credentials(monkeypatch, sim)
    backups, replicas = _sendable(sim)
    assert _discover(sim, tmp_path, include_replicas=True) == backups | replicas


@pytest.mark.parametrize(
    ("item", "replica"),
    [
        ({"image_type": "replication"}, True),  # CBR BackupResp
        ({"image_type": "backup", "extend_info": None}, False),
        ({"extend_info": {"copy_from": "cn-north-4"}}, True),  # CSBS checkpoint item
        ({"extend_info": {"copy_from": "", "image_type": "replication"}}, True),
        ({"extend_info": {"copy_from": "", "image_type": "backup"}}, False),
        ({}, False),
    ],
)
def test_what_makes_an_item_a_replica(item: dict[str, object], replica: bool) -> None:
    from orchestrator.discovery.item import is_replica

    assert is_replica(item) is replica


def test_the_simulator_shows_no_replica_unless_asked() -> None:
    with simulator_thread(items=20, seed=11) as plain:
        items = [i for p in plain.state.projects for i in plain.state.items_of(p.id)]
        assert {image_type(i, plain.state.config.replica_share) for i in items} == {"backup"}
