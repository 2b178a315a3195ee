"""A ``[connection.endpoints]`` key no row of the manifest uses (``cn-nort-4`` for
``cn-north-4``) would send that region to the public endpoint in silence: ``plan`` notes it,
``run`` warns of it, naming the key and the regions the manifest does use. A warning only:
one config may serve several manifests."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from orchestrator.cli.main import main
from orchestrator.exitcodes import ExitCode
from tests.helpers.env import use_sim_credentials
from tests.helpers.manifests import write_manifest
from tests.helpers.simthread import simulator_thread


def _files(tmp_path: Path, key: str, url: str = "http://127.0.0.1:9") -> tuple[Path, Path]:
    config = tmp_path / "c.toml"
    config.write_text(
        f'[connection]\nregion = "cn-north-1"\n\n[connection.endpoints]\n{key} = "{url}"\n'
    )
    manifest = tmp_path / "m.csv"
    row = {
        "checkpoint_item_id": str(uuid.UUID(int=7)),
        "project_id": "a" * 32,
        "source_region": "cn-north-4",
        "destination_region": "cn-east-2",
        "destination_project_id": "b" * 32,
    }
    write_manifest(manifest, [row])
    return config, manifest


_SAID = (
    "[connection.endpoints] 'cn-nort-4': no row of the manifest uses this region (a typo? "
    "the manifest uses cn-east-2, cn-north-1, cn-north-4"
)


def test_plan_notes_an_endpoints_key_no_row_uses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, manifest = _files(tmp_path, "cn-nort-4")
    code = main(["plan", "--offline", "--config", str(config), "--manifest", str(manifest)])
    out = capsys.readouterr().out
    assert code == ExitCode.OK
    assert f"note: {_SAID}" in out


def test_plan_says_nothing_when_every_key_is_used(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, manifest = _files(tmp_path, "cn-north-4")
    code = main(["plan", "--offline", "--config", str(config), "--manifest", str(manifest)])
    assert code == ExitCode.OK
    assert "note:" not in capsys.readouterr().out


def test_run_warns_of_an_endpoints_key_no_row_uses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with simulator_thread(items=5, seed=2) as sim:
        use_sim_credentials(monkeypatch, sim)
        config, manifest = _files(tmp_path, "cn-nort-4", sim.base_url)
        argv = ["run", "--endpoint", sim.base_url, "--config", str(config)]
        argv += ["--manifest", str(manifest), "--ledger", str(tmp_path / "l.jsonl")]
        main([*argv, "--log-format", "json", "--no-progress"])
    events = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
    (warned,) = [e for e in events if e["event"] == "config.endpoints_unused"]
    assert warned["level"] == "warning"
    assert _SAID in warned["note"]


def test_simulate_does_not_warn_of_its_own_endpoints(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--simulate serves every region of its estate at its own URL: no typo to warn of."""
    config, manifest = _files(tmp_path, "cn-north-4")
    argv = ["run", "--simulate", "--config", str(config), "--manifest", str(manifest)]
    main([*argv, "--ledger", str(tmp_path / "l.jsonl"), "--log-format", "json", "--no-progress"])
    assert "config.endpoints_unused" not in capsys.readouterr().err
