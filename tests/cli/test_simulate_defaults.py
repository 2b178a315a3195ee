"""``--simulate`` fills in what the simulator knows and the command needs: the project and,
for ``run --discover``, the region to list (the simulator's first project, in its region)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli.main import main
from orchestrator.exitcodes import ExitCode


def test_run_simulate_discover_lists_the_first_simulated_project_without_region(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["run", "--simulate", "--discover", "--to", f"cn-east-2={'b' * 32}", "--dry-run"]
    code = main([*argv, "--ledger", str(tmp_path / "l.jsonl"), "--log-level", "error"])
    captured = capsys.readouterr()
    assert code == ExitCode.OK, captured.err
    assert "no source to list" not in captured.err
    assert captured.out.startswith("cn-north-1/")  # the simulator's first region
