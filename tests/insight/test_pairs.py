"""``report --pairs`` over a CBR ledger: every pair once, with its backup and vault; the file
private to its owner, and no cell a spreadsheet would run."""

from __future__ import annotations

import csv
import stat
from pathlib import Path

import orjson
import pytest

from orchestrator.cli.main import main
from orchestrator.exitcodes import ExitCode

REPO = Path(__file__).resolve().parents[2]


def test_a_cbr_ledger_gives_one_row_per_backup_with_its_vault(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    ledger, out = tmp_path / "cbr.jsonl", tmp_path / "pairs.csv"
    manifest = REPO / "configs" / "example-cbr-manifest.csv"
    argv = ["run", "--simulate", "--service", "cbr", "--manifest", str(manifest)]
    argv += ["--ledger", str(ledger), "--config", str(REPO / "configs" / "example.toml")]
    assert main([*argv, "--no-progress"]) == ExitCode.OK
    with manifest.open(encoding="utf-8", newline="") as handle:
        wanted = {(r["backup_id"], r["destination_region"]) for r in csv.DictReader(handle)}

    assert main(["report", str(ledger), "--pairs", str(out)]) == ExitCode.OK
    assert f"wrote {len(wanted)} pairs to {out}" in capfd.readouterr().err
    with out.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {(r["backup_id"], r["destination_region"]) for r in rows} == wanted
    assert len(rows) == len(wanted)  # one row a pair: no attempt line left over as "unknown"
    assert all(r["destination_vault_id"] for r in rows)
    assert {r["status"] for r in rows} <= {"replicated", "already_replicated"}
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def test_a_message_that_looks_like_a_formula_is_neutralised(tmp_path: Path) -> None:
    ledger, out = tmp_path / "l.jsonl", tmp_path / "pairs.csv"
    started = {"v": 1, "event": "run_started", "run_id": "r1", "ts": "2026-12-03T00:00:00Z"}
    failed = {
        "v": 1,
        "event": "result",
        "run_id": "r1",
        "ts": "2026-12-03T00:00:01Z",
        "project_id": "a" * 32,
        "checkpoint_item_id": "bb2f12e5-b37f-4e04-baa2-e7f5c7445423",
        "destination_region": "cn-east-2",
        "status": "failed",
        "error_msg": '=HYPERLINK("http://evil.invalid","x")',
        "attempts": 1,
    }
    ledger.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in (started, failed)))
    assert main(["report", str(ledger), "--pairs", str(out)]) == ExitCode.OK
    (row,) = csv.DictReader(out.open(encoding="utf-8", newline=""))
    assert row["status"] == "failed"
    assert not row["error_msg"].startswith("=")
    assert "HYPERLINK" in row["error_msg"]
