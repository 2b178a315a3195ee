"""An output file the tool cannot write (its folder is missing, it is a directory) is a clear
error naming the file, with the documented exit code: never ``internal error`` (exit 1)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from orchestrator.cli.main import main
from orchestrator.exitcodes import ExitCode
from tests.helpers.env import use_sim_credentials
from tests.helpers.manifests import write_manifest
from tests.helpers.simthread import simulator_thread

_ITEM = "10000000-0000-4000-8000-000000000000"


def _ledger_with_a_failure(path: Path) -> Path:
    lines = [
        {"v": 1, "event": "run_started", "ts": "2025-01-01T00:00:00+00:00", "run_id": "r1",
         "manifest": "/m.csv", "source": "manifest"},
        {"v": 1, "event": "result", "ts": "2025-01-01T00:00:01+00:00", "run_id": "r1",
         "project_id": "ab" * 16, "checkpoint_item_id": _ITEM, "source_region": "cn-north-1",
         "destination_region": "cn-east-2", "destination_project_id": "cd" * 16,
         "status": "failed", "attempts": 1, "http_status": 400, "error_code": "CSBS.4000"},
        {"v": 1, "event": "run_finished", "ts": "2025-01-01T00:00:02+00:00", "run_id": "r1",
         "exit_code": 3, "requests": 1, "retries": 0, "interrupted": False},
    ]  # fmt: skip
    path.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    return path


@pytest.mark.parametrize("where", ["missing-folder/again.csv", "a-directory"])
def test_report_failed_manifest_that_cannot_be_written_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    ledger = _ledger_with_a_failure(tmp_path / "l.jsonl")
    (tmp_path / "a-directory").mkdir()
    target = tmp_path / where
    assert main(["report", str(ledger), "--failed-manifest", str(target)]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert "internal error" not in err
    assert f"{target}: cannot write the failed manifest" in err


def test_a_metrics_file_that_cannot_be_written_does_not_turn_a_finished_run_into_exit_1(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Metrics never stop a run (docs/operating.md): the run's own exit code and summary stand,
    # and the failed write is logged naming the file.
    with simulator_thread(items=20, seed=3) as sim:
        use_sim_credentials(monkeypatch, sim)
        project = sim.state.projects[0]
        items = [i.id for i in sim.state.items_of(project.id) if i.status == "available"][:3]
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
        manifest, ledger = tmp_path / "m.csv", tmp_path / "l.jsonl"
        write_manifest(manifest, rows)
        metrics = tmp_path / "no-such-folder" / "run.prom"
        argv = ["run", "--manifest", str(manifest), "--ledger", str(ledger), "--no-progress",
                "--endpoint", sim.base_url, "--metrics-file", str(metrics)]  # fmt: skip
        assert main(argv) == ExitCode.OK
    captured = capsys.readouterr()
    assert "internal error" not in captured.err
    assert "done: replicated 3" in captured.out
    assert "metrics.failed" in captured.err
    assert str(metrics) in captured.err
