"""An output file the tool cannot write (its folder is missing, it is a directory) is a clear
error naming the file, with the documented exit code: never ``internal error`` (exit 1)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from orchestrator.cli.main import main
from orchestrator.exitcodes import ExitCode

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
