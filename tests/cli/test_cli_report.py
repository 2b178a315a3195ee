"""``report LEDGER`` through the CLI: the numbers of ``--format json`` against a known ledger,
the CSV and table shapes, exit codes, and the ``--failed-manifest`` round trip (a run with
permanent failures -> the failed pairs as a manifest -> a run of it sends exactly those)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from orchestrator.cli.main import main
from orchestrator.ledger.file import iter_records
from orchestrator.simulator import Simulator
from orchestrator.simulator.csbs import REPLICATE
from tests.helpers.env import use_sim_credentials
from tests.helpers.manifests import write_manifest
from tests.helpers.runkit import final_results
from tests.helpers.simthread import simulator_thread

P = "ab" * 16
A, B, C, D, E = (f"{n}0000000-0000-4000-8000-000000000000" for n in range(1, 6))
EAST, SOUTH = "cn-east-2", "cn-south-1"


def _line(event: str, run_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "v": 1,
        "event": event,
        "ts": f"2025-01-0{run_id[-1]}T00:00:00+00:00",
        "run_id": run_id,
        **fields,
    }


def _result(run_id: str, item: str, region: str, status: str, **fields: Any) -> dict[str, Any]:
    return _line(
        "result",
        run_id,
        project_id=P,
        checkpoint_item_id=item,
        source_region="cn-north-1",
        destination_region=region,
        destination_project_id="cd" * 16,
        status=status,
        **fields,
    )


def _known_ledger(path: Path) -> Path:
    lines = [
        _line("run_started", "r1", manifest="/m.csv", source="manifest"),
        _result("r1", A, EAST, "replicated", attempts=1, duration_s=1.0, replication_record_id="x"),
        _result("r1", B, EAST, "failed", attempts=1, duration_s=2.0, http_status=400,
                error_code="CSBS.4000", error_msg="B is not available"),
        _result("r1", C, SOUTH, "gave_up", attempts=3, duration_s=3.0, http_status=429,
                error_code="APIG.0308", error_msg="throttled"),
        _result("r1", D, SOUTH, "failed", attempts=2, duration_s=4.0, http_status=400,
                error_code="CSBS.4000", error_msg="D is not available"),
        _line("run_finished", "r1", exit_code=4, requests=10, retries=3, interrupted=False,
              duration_s=9.5),
        _line("run_started", "r2", manifest="/m.csv", source="manifest"),
        _result("r2", B, EAST, "replicated", attempts=2, duration_s=5.0),
        _line("attempt", "r2", project_id=P, checkpoint_item_id=E, destination_region=EAST,
              destination_project_id="cd" * 16, attempt=1),
        _line("run_finished", "r2", exit_code=6, requests=3, retries=1, interrupted=True,
              reason="signal", duration_s=1.5),
        {**_result("track", A, EAST, "x"), "event": "copy_status", "copy_status": "success",
         "replication_record_id": "x", "progress": 100},
    ]  # fmt: skip
    path.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    return path


def _report(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(["report", *argv]) == 0
    return capsys.readouterr().out


def test_report_json_numbers_of_the_last_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ledger = _known_ledger(tmp_path / "l.jsonl")
    doc = orjson.loads(_report(capsys, str(ledger), "--format", "json"))
    assert [run["run_id"] for run in doc["runs"]] == ["r2"]
    assert doc["runs"][0]["reason"] == "signal"
    assert doc["runs"][0]["exit_code"] == 6
    assert doc["pairs"] == 2
    assert doc["by_region"] == {
        EAST: {
            "replicated": 1,
            "already_replicated": 0,
            "failed": 0,
            "gave_up": 0,
            "rejected": 0,
            "unknown": 1,
            "total": 2,
        }
    }
    assert doc["errors"] == []
    assert (doc["retries"], doc["attempts"]) == (1, {"2": 1})
    assert doc["durations"] == {"count": 1, "median_s": 5.0, "p95_s": 5.0}


def test_report_json_numbers_of_all_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ledger = _known_ledger(tmp_path / "l.jsonl")
    doc = orjson.loads(_report(capsys, str(ledger), "--format", "json", "--run", "all"))
    assert [run["run_id"] for run in doc["runs"]] == ["r1", "r2"]
    by_region = {r: {s: n for s, n in v.items() if n} for r, v in doc["by_region"].items()}
    assert by_region == {
        EAST: {"replicated": 2, "unknown": 1, "total": 3},  # B's failure was repaired in r2
        SOUTH: {"failed": 1, "gave_up": 1, "total": 2},
    }
    assert doc["errors"] == [
        {
            "error_code": "CSBS.4000",
            "count": 2,
            "example": {
                "error_msg": "B is not available",
                "http_status": 400,
                "checkpoint_item_id": B,
            },
        },
        {
            "error_code": "APIG.0308",
            "count": 1,
            "example": {"error_msg": "throttled", "http_status": 429, "checkpoint_item_id": C},
        },
    ]
    assert doc["retries"] == 4
    assert doc["attempts"] == {"1": 2, "2": 2, "3": 1}
    assert doc["durations"] == {"count": 5, "median_s": 3.0, "p95_s": 5.0}
    assert doc["copy_status"] == {"success": 1}


def test_report_csv_table_and_one_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ledger = _known_ledger(tmp_path / "l.jsonl")
    rows = list(
        csv.DictReader(io.StringIO(_report(capsys, str(ledger), "--format", "csv", "--run", "r1")))
    )
    counts = {(r["destination_region"], r["status"]): int(r["count"]) for r in rows}
    assert len(rows) == 2 * 6  # every region x status, zeros included
    assert counts[EAST, "replicated"] == counts[EAST, "failed"] == 1
    assert counts[SOUTH, "gave_up"] == counts[SOUTH, "failed"] == 1
    table = _report(capsys, str(ledger), "--run", "r1")
    assert "Ledger report: run r1, 1 run(s), 4 pair(s)" in table
    assert "CSBS.4000" in table
    assert "B is not available" in table
    assert "median 2.500 s" in table


def test_report_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ledger = _known_ledger(tmp_path / "l.jsonl")
    assert main(["report", str(tmp_path / "missing.jsonl")]) == 2
    assert main(["report", str(ledger), "--run", "nope"]) == 2
    assert main(["report", str(ledger), "--failed-manifest", str(tmp_path / "f.csv"),
                 "--include", "bogus"]) == 2  # fmt: skip
    newer = tmp_path / "newer.jsonl"
    newer.write_bytes(orjson.dumps({"v": 2, "event": "result", "run_id": "x"}) + b"\n")
    assert main(["report", str(newer)]) == 8
    assert "error:" in capsys.readouterr().err


# -- the failed-manifest round trip ----------------------------------------------------------


@pytest.fixture
def sim(monkeypatch: pytest.MonkeyPatch) -> Iterator[Simulator]:
    with simulator_thread(items=60, seed=4) as sim:
        use_sim_credentials(monkeypatch, sim)
        yield sim


def test_failed_manifest_round_trip(
    sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = sim.state.projects[0]
    items = sim.state.items_of(project.id)
    broken = [i.id for i in items if i.status == "error"][:3]
    fine = [i.id for i in items if i.status == "available"][:5]
    assert broken
    assert fine
    rows = [
        {
            "checkpoint_item_id": item,
            "project_id": project.id,
            "source_region": project.region,
            "destination_region": "cn-east-2",
            "destination_project_id": sim.state.destination_projects["cn-east-2"],
        }
        for item in [*fine, *broken]
    ]
    manifest, ledger, again = tmp_path / "m.csv", tmp_path / "l.jsonl", tmp_path / "again.csv"
    write_manifest(manifest, rows)
    run = ["--ledger", str(ledger), "--endpoint", sim.base_url, "--no-progress"]
    assert main(["run", "--manifest", str(manifest), *run, "--log-level", "error"]) == 3
    assert sim.counters.requests_for(REPLICATE, 400) == len(broken)

    assert main(["report", str(ledger), "--failed-manifest", str(again)]) == 0
    captured = capsys.readouterr()
    assert f"wrote {len(broken)} pairs to {again}" in captured.err
    listed = list(csv.DictReader(again.open()))
    assert sorted(r["checkpoint_item_id"] for r in listed) == sorted(broken)
    assert {r["source_region"] for r in listed} == {project.region}

    # Run that manifest on the same ledger: --retry-failed sends exactly those pairs again.
    assert (
        main(["run", "--manifest", str(again), *run, "--retry-failed", "--log-level", "error"]) == 3
    )
    assert sim.counters.requests_for(REPLICATE, 400) == 2 * len(broken)
    assert sim.counters.requests_for(REPLICATE, 200) == len(fine)  # the others not again
    last_run = [r for r in iter_records(ledger) if r["event"] == "result"][-len(broken) :]
    assert sorted(r["checkpoint_item_id"] for r in last_run) == sorted(broken)
    assert {k[1] for k, r in final_results(ledger).items() if r["status"] == "failed"} == set(
        broken
    )
