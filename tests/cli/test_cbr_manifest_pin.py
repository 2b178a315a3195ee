"""A CBR manifest is pinned by its digests like a CSBS one (tests/cli/test_operator_safety.py):
a rewrite or truncation mid-run stops with ``manifest_changed`` (exit 6) and nothing pass one
did not validate is sent; ``run_started`` records its size and SHA-256; ``resume`` refuses a
changed manifest unless ``--replan``; a ``touch`` is not a change."""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.cli.main import main
from orchestrator.exitcodes import ExitCode
from orchestrator.simulator import Simulator
from orchestrator.simulator.sample import CBR_MANIFEST_COLUMNS, cbr_rows
from tests.cli.test_operator_safety import (
    FOREIGN_PROJECT,
    _clean_env,  # noqa: F401 - the autouse fixture applies here too
    change_manifest_after,
    records,
    resume_argv,
    run_argv,
)
from tests.helpers.env import use_sim_credentials
from tests.helpers.simthread import simulator_thread


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with simulator_thread(items=60, seed=3) as served:
        yield served


def fresh_cbr_rows(sim: Simulator, count: int | None = None) -> list[dict[str, str]]:
    rows = [
        row
        for row in cbr_rows(sim.state)
        if sim.state.latest_record(row["backup_id"], row["destination_region"]) is None
    ]
    return rows[:count]


def write_cbr_rows(path: Path, rows: list[dict[str, str]], *, pad: int = 0) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, [*CBR_MANIFEST_COLUMNS, "name"], lineterminator="\n")
        writer.writeheader()
        writer.writerows([dict(row, name="n" * pad) if pad else row for row in rows])
    return path


def cbr_run(sim: Simulator, tmp_path: Path, manifest: Path, *extra: str) -> list[str]:
    return run_argv(sim, tmp_path, manifest, "--service", "cbr", *extra)


def test_a_cbr_manifest_rewritten_during_a_run_never_sends_a_row_pass_one_did_not_validate(
    sim: Simulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    use_sim_credentials(monkeypatch, sim)
    rows = fresh_cbr_rows(sim)
    assert len(rows) >= 30
    manifest = write_cbr_rows(tmp_path / "m.csv", rows, pad=200)
    rewritten = [dict(row, destination_project_id=FOREIGN_PROJECT) for row in rows]
    change_manifest_after(monkeypatch, 5, lambda: write_cbr_rows(manifest, rewritten, pad=200))
    code = main(cbr_run(sim, tmp_path, manifest, "--concurrency", "1", "--per-region", "1"))
    err = capfd.readouterr().err
    ledger = tmp_path / "ledger.jsonl"
    sent = records(ledger, "attempt")
    assert "manifest.changed" in err
    assert all(r["destination_project_id"] != FOREIGN_PROJECT for r in sent)
    pairs = [(r["backup_id"], r["destination_region"]) for r in records(ledger, "result")]
    assert len(pairs) == len(set(pairs)), "a pair was sent twice"
    assert len(pairs) < len(rows)
    (finished,) = records(ledger, "run_finished")
    assert finished["reason"] == "manifest_changed"
    assert code == ExitCode.INTERRUPTED
    assert finished["exit_code"] == ExitCode.INTERRUPTED


def test_a_cbr_manifest_truncated_during_a_run_stops_with_run_finished(
    sim: Simulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    use_sim_credentials(monkeypatch, sim)
    rows = fresh_cbr_rows(sim)
    manifest = write_cbr_rows(tmp_path / "m.csv", rows, pad=200)
    change_manifest_after(monkeypatch, 5, lambda: write_cbr_rows(manifest, rows[:8], pad=200))
    code = main(cbr_run(sim, tmp_path, manifest))
    out, err = capfd.readouterr()
    assert code == ExitCode.INTERRUPTED, err
    (finished,) = records(tmp_path / "ledger.jsonl", "run_finished")
    assert finished["reason"] == "manifest_changed"
    assert "manifest changed" in out


def test_a_cbr_jsonl_manifest_rewritten_during_a_run_stops_too(
    sim: Simulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    import json

    use_sim_credentials(monkeypatch, sim)
    rows = fresh_cbr_rows(sim)
    manifest = tmp_path / "m.jsonl"

    def write(rows: list[dict[str, str]]) -> None:
        manifest.write_text(
            "".join(json.dumps(dict(r, name="n" * 200)) + "\n" for r in rows), encoding="utf-8"
        )

    write(rows)
    rewritten = [dict(row, destination_project_id=FOREIGN_PROJECT) for row in rows]
    change_manifest_after(monkeypatch, 5, lambda: write(rewritten))
    code = main(cbr_run(sim, tmp_path, manifest, "--concurrency", "1", "--per-region", "1"))
    capfd.readouterr()
    ledger = tmp_path / "ledger.jsonl"
    assert all(r["destination_project_id"] != FOREIGN_PROJECT for r in records(ledger, "attempt"))
    (finished,) = records(ledger, "run_finished")
    assert finished["reason"] == "manifest_changed"
    assert code == ExitCode.INTERRUPTED


def test_cbr_run_started_records_the_manifest_size_and_sha256(
    sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_sim_credentials(monkeypatch, sim)
    manifest = write_cbr_rows(tmp_path / "m.csv", fresh_cbr_rows(sim, 3))
    assert main(cbr_run(sim, tmp_path, manifest)) == ExitCode.OK
    (started,) = records(tmp_path / "ledger.jsonl", "run_started")
    data = manifest.read_bytes()
    assert started["settings"]["service"] == "cbr"
    assert started["manifest_size"] == len(data)
    assert started["manifest_sha256"] == hashlib.sha256(data).hexdigest()


def test_cbr_resume_refuses_a_changed_manifest_unless_told_to_replan(
    sim: Simulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    use_sim_credentials(monkeypatch, sim)
    rows = fresh_cbr_rows(sim, 4)
    manifest = write_cbr_rows(tmp_path / "m.csv", rows[:3])
    assert main(cbr_run(sim, tmp_path, manifest)) == ExitCode.OK
    write_cbr_rows(manifest, rows)  # one more row
    capfd.readouterr()
    assert main(resume_argv(sim, tmp_path)) == ExitCode.USAGE
    err = capfd.readouterr().err
    assert "--replan" in err
    assert len(records(tmp_path / "ledger.jsonl", "run_started")) == 1  # nothing recorded
    assert main(resume_argv(sim, tmp_path, "--replan")) == ExitCode.OK
    results = records(tmp_path / "ledger.jsonl", "result")
    assert len(results) == 4
    assert {r["backup_id"] for r in results} == {r["backup_id"] for r in rows}


def test_cbr_resume_of_an_unchanged_manifest_needs_no_flag(
    sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_sim_credentials(monkeypatch, sim)
    manifest = write_cbr_rows(tmp_path / "m.csv", fresh_cbr_rows(sim, 3))
    assert main(cbr_run(sim, tmp_path, manifest)) == ExitCode.OK
    manifest.touch()  # a new modification time, the same bytes
    assert main(resume_argv(sim, tmp_path)) == ExitCode.OK
