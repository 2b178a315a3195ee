"""``plan --service cbr`` asks each destination vault at its destination region's endpoint
(``GET /v3/{project}/vaults/{id}``): a vault of another region, of another project, or none
at all is a problem naming what to fix (exit 3); with one shared ``--endpoint`` the region
cannot be told and the plan says so."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.cli.main import main
from orchestrator.exitcodes import ExitCode
from orchestrator.simulator import Simulator
from orchestrator.simulator.cbr import SHOW_VAULT
from orchestrator.simulator.cbr_views import vault_id
from orchestrator.simulator.sample import CBR_MANIFEST_COLUMNS
from tests.cli.test_operator_safety import _clean_env  # noqa: F401 - autouse here too
from tests.helpers.env import use_sim_credentials
from tests.helpers.simthread import simulator_thread

DEST = "cn-east-3"
UNKNOWN_VAULT = "0f1e2d3c-4b5a-5968-8776-a5b4c3d2e1f0"


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with simulator_thread(items=30, seed=5) as served:
        yield served


def _manifest(sim: Simulator, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """Four backups of a cn-north-1 project to cn-east-3: the right vault, a vault of the
    destination project in another region, a vault of another project in cn-east-3, and a
    vault that does not exist."""
    project = next(p for p in sim.state.projects if p.region == "cn-north-1")
    dest = sim.state.destination_projects[DEST]
    backups = [i.id for i in sim.state.items_of(project.id) if i.status == "available"][:4]
    vaults = {
        "right": vault_id(dest, DEST),
        "other_region": vault_id(dest, "cn-south-1"),
        "other_project": vault_id(project.id, DEST),
        "unknown": UNKNOWN_VAULT,
    }
    path = tmp_path / "m.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, CBR_MANIFEST_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for backup, vault in zip(backups, vaults.values(), strict=True):
            writer.writerow(
                {
                    "backup_id": backup,
                    "project_id": project.id,
                    "source_region": project.region,
                    "destination_region": DEST,
                    "destination_project_id": dest,
                    "destination_vault_id": vault,
                }
            )
    return path, vaults


def _plan(
    sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str], *extra: str
) -> tuple[int, dict[str, Any]]:
    manifest, _ = _manifest(sim, tmp_path)
    capsys.readouterr()
    code = main(["plan", "--json", "--service", "cbr", "--manifest", str(manifest), *extra])
    out, err = capsys.readouterr()
    assert out, err
    return code, json.loads(out)


def test_plan_finds_vaults_of_another_region_or_project_at_the_regions_own_endpoint(
    sim: Simulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    use_sim_credentials(monkeypatch, sim)
    _, vaults = _manifest(sim, tmp_path)
    config = tmp_path / "regional.toml"
    table = "\n".join(f'{r} = "{url}"' for r, url in sim.region_urls.items())
    config.write_text(f"[connection.endpoints]\n{table}\n", encoding="utf-8")
    code, doc = _plan(sim, tmp_path, capsys, "--config", str(config))
    assert code == ExitCode.FAILED
    assert doc["vaults_checked"] == 4
    assert doc["vault_region_checked"] is True
    bad = {p["destination_vault_id"]: p["reason"] for p in doc["vault_problems"]}
    assert set(bad) == {vaults["other_region"], vaults["other_project"], vaults["unknown"]}
    assert "fix destination_vault_id" in bad[vaults["other_region"]]
    assert DEST in bad[vaults["other_region"]]
    assert doc["vaults_unchecked"] == []
    assert sim.counters.requests_for(SHOW_VAULT, 200) == 1


def test_with_one_shared_endpoint_the_region_is_not_checked_and_the_plan_says_so(
    sim: Simulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    use_sim_credentials(monkeypatch, sim)
    _, vaults = _manifest(sim, tmp_path)
    code, doc = _plan(sim, tmp_path, capsys, "--endpoint", sim.base_url)
    assert code == ExitCode.FAILED
    assert doc["vault_region_checked"] is False
    bad = {p["destination_vault_id"] for p in doc["vault_problems"]}
    # Existence and project still checked; the other region's vault passes here.
    assert bad == {vaults["other_project"], vaults["unknown"]}
    manifest, _ = _manifest(sim, tmp_path)
    capsys.readouterr()
    argv = ["plan", "--service", "cbr", "--manifest", str(manifest), "--endpoint", sim.base_url]
    assert main(argv) == ExitCode.FAILED
    assert "region not" in capsys.readouterr().out


def test_a_plan_of_right_vaults_is_clean(
    sim: Simulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    use_sim_credentials(monkeypatch, sim)
    manifest, _ = _manifest(sim, tmp_path)
    rows = list(csv.DictReader(manifest.open(encoding="utf-8")))[:1]
    with manifest.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, CBR_MANIFEST_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    capsys.readouterr()
    argv = ["plan", "--json", "--service", "cbr", "--manifest", str(manifest)]
    code = main([*argv, "--endpoint", sim.base_url])
    doc = json.loads(capsys.readouterr().out)
    assert code == ExitCode.OK, doc
    assert doc["vaults_checked"] == 1
    assert doc["vault_problems"] == []


def test_a_config_file_with_a_connection_endpoints_table_passes_the_key_check(
    tmp_path: Path,
) -> None:
    from orchestrator.config.config_file import load_config
    from orchestrator.config.settings import resolve

    config = tmp_path / "c.toml"
    config.write_text(
        '[connection]\nservice = "cbr"\n[connection.endpoints]\n'
        'cn-north-4 = "https://cbr.cn-north-4.example.internal"\n',
        encoding="utf-8",
    )
    loaded = load_config(str(config))
    settings = resolve(None, {}, loaded, config_path=str(config))
    assert settings.connection.endpoints == {
        "cn-north-4": "https://cbr.cn-north-4.example.internal"
    }


def _keep_rows(manifest: Path, vaults: set[str]) -> Path:
    """The manifest with only the rows to these vaults (the header stays line 1)."""
    rows = list(csv.DictReader(manifest.open(encoding="utf-8")))
    with manifest.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, CBR_MANIFEST_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(r for r in rows if r["destination_vault_id"] in vaults)
    return manifest


def test_a_run_to_a_vault_of_another_region_fails_saying_what_to_fix(
    sim: Simulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With one shared endpoint the vault's region cannot be checked before the run: the
    service refuses the pair, and its result says what to fix. A vault that does not exist
    is found before the run (below), and refused then, saying the same."""
    from orchestrator.ledger.file import iter_records

    use_sim_credentials(monkeypatch, sim)
    manifest, vaults = _manifest(sim, tmp_path)
    ledger = tmp_path / "ledger.jsonl"
    argv = ["run", "--service", "cbr", "--manifest", str(manifest), "--ledger", str(ledger)]
    capsys.readouterr()
    assert main([*argv, "--endpoint", sim.base_url, "--no-progress"]) == ExitCode.USAGE
    assert "fix destination_vault_id" in capsys.readouterr().err
    assert not ledger.exists()
    _keep_rows(manifest, {vaults["right"], vaults["other_region"]})
    code = main([*argv, "--endpoint", sim.base_url, "--no-progress"])
    assert code == ExitCode.FAILED
    results = {r["destination_vault_id"]: r for r in iter_records(ledger) if r["event"] == "result"}
    assert results[vaults["right"]]["status"] == "replicated"
    wrong = results[vaults["other_region"]]
    assert wrong["status"] == "failed"
    assert "fix destination_vault_id" in wrong["error_msg"]
    assert f"in {DEST}" in wrong["error_msg"]


def _regional_config(sim: Simulator, tmp_path: Path) -> Path:
    config = tmp_path / "regional.toml"
    table = "\n".join(f'{r} = "{url}"' for r, url in sim.region_urls.items())
    config.write_text(f"[connection.endpoints]\n{table}\n", encoding="utf-8")
    return config


@pytest.mark.parametrize("wrong", ["other_region", "other_project", "unknown"])
def test_a_run_refuses_a_wrong_vault_before_sending_naming_line_and_field(
    sim: Simulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    wrong: str,
) -> None:
    """As ``plan`` does, at each destination region's own endpoint: exit 2, nothing sent,
    nothing recorded, the error naming manifest line, field and vault."""
    use_sim_credentials(monkeypatch, sim)
    manifest, vaults = _manifest(sim, tmp_path)
    _keep_rows(manifest, {vaults["right"], vaults[wrong]})
    rows = list(csv.DictReader(manifest.open(encoding="utf-8")))
    line = 2 + [r["destination_vault_id"] for r in rows].index(vaults[wrong])
    ledger = tmp_path / "ledger.jsonl"
    argv = ["run", "--service", "cbr", "--manifest", str(manifest), "--ledger", str(ledger)]
    capsys.readouterr()
    code = main([*argv, "--config", str(_regional_config(sim, tmp_path)), "--no-progress"])
    err = capsys.readouterr().err
    assert code == ExitCode.USAGE
    assert f"manifest: {manifest}:{line}: field 'destination_vault_id': " in err
    assert vaults[wrong] in err
    assert "fix destination_vault_id" in err
    assert "nothing sent" in err
    assert "Traceback" not in err
    assert sim.counters.replications.total() == 0
    assert not ledger.exists()


def test_a_run_to_right_vaults_asks_each_once_and_sends(
    sim: Simulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    use_sim_credentials(monkeypatch, sim)
    manifest, vaults = _manifest(sim, tmp_path)
    _keep_rows(manifest, {vaults["right"]})
    ledger = tmp_path / "ledger.jsonl"
    argv = ["run", "--service", "cbr", "--manifest", str(manifest), "--ledger", str(ledger)]
    code = main([*argv, "--config", str(_regional_config(sim, tmp_path)), "--no-progress"])
    capsys.readouterr()
    assert code == ExitCode.OK
    assert sim.counters.requests_for(SHOW_VAULT, 200) == 1
    assert sim.counters.replications.total() == 1


def _discover_config(sim: Simulator, tmp_path: Path, vault: str) -> Path:
    project = next(p for p in sim.state.projects if p.region == "cn-north-1")
    dest = sim.state.destination_projects[DEST]
    config = tmp_path / "discover.toml"
    config.write_text(
        f'[[discover.sources]]\nproject_id = "{project.id}"\nregion = "{project.region}"\n'
        f'[[discover.rules]]\nto = [{{ region = "{DEST}", project_id = "{dest}" }}]\n'
        f'[discover.cbr]\ndestination_vaults = {{ "{DEST}" = "{vault}" }}\n',
        encoding="utf-8",
    )
    return config


def test_discover_refuses_a_wrong_vault_before_writing_the_manifest(
    sim: Simulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    use_sim_credentials(monkeypatch, sim)
    config = _discover_config(sim, tmp_path, UNKNOWN_VAULT)
    out = tmp_path / "pairs.csv"
    argv = ["discover", "--service", "cbr", "--config", str(config), "--output", str(out)]
    capsys.readouterr()
    code = main([*argv, "--endpoint", sim.base_url])
    err = capsys.readouterr().err
    assert code == ExitCode.USAGE
    assert f"vault {UNKNOWN_VAULT}" in err
    assert "[discover.cbr] destination_vaults" in err
    assert "Traceback" not in err
    assert not out.exists()
    # The right vault: asked once, the manifest written.
    dest = sim.state.destination_projects[DEST]
    config = _discover_config(sim, tmp_path, vault_id(dest, DEST))
    assert main([*argv, "--endpoint", sim.base_url]) == ExitCode.OK
    assert out.read_text(encoding="utf-8").count(vault_id(dest, DEST)) > 0
    assert sim.counters.requests_for(SHOW_VAULT, 200) == 1


def test_a_discovered_run_refuses_a_wrong_vault_naming_the_config(
    sim: Simulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The vaults of discovered pairs come from ``[discover.cbr]``: that is what to fix."""
    use_sim_credentials(monkeypatch, sim)
    config = _discover_config(sim, tmp_path, UNKNOWN_VAULT)
    ledger = tmp_path / "ledger.jsonl"
    argv = ["run", "--discover", "--service", "cbr", "--config", str(config)]
    capsys.readouterr()
    code = main([*argv, "--ledger", str(ledger), "--endpoint", sim.base_url, "--no-progress"])
    err = capsys.readouterr().err
    assert code == ExitCode.USAGE
    assert f"vault {UNKNOWN_VAULT}" in err
    assert "[discover.cbr] destination_vaults" in err
    assert "Traceback" not in err
    assert sim.counters.replications.total() == 0
    assert not ledger.exists()
