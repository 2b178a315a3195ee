"""Compact ``attempt``/``result`` lines: a finished pair costs at most 500 bytes, and every
reader sees exactly what the verbose lines would have said.

Properties:

* a simulated run's ledger holds at most 500 bytes per finished pair;
* the same events written verbose and compact read back (``iter_records``) as equal records,
  fold (``History``, with and without record ids, and from a snapshot saved mid-run) to the
  same history, and give the same report and first-attempt times;
* a compact line with no ``run_started`` before it is refused, never misread.
"""

from __future__ import annotations

import functools
import itertools
import os
import time
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest

from orchestrator.engine.job_ledger import first_attempts_of
from orchestrator.errors import LedgerError
from orchestrator.insight.report import build_report
from orchestrator.insight.report_render import report_dict
from orchestrator.ledger.file import LedgerReader, LedgerWriter, iter_records
from orchestrator.ledger.history import History
from orchestrator.ledger.recorder import LedgerRecorder
from orchestrator.ledger.run_lines import RunFinished, RunStarted
from orchestrator.models import Outcome, ReplicationTask, ResultStatus
from tests.conftest import MakeSimulator
from tests.helpers.runkit import estate_manifest, run_in_process

PROJECTS = ("a" * 32, "c" * 32)
REGIONS = ("cn-east-2", "ap-southeast-1")


def _task(n: int, *, cbr: bool = False) -> ReplicationTask:
    project = PROJECTS[n % 2]
    region = REGIONS[n // 2 % 2]
    return ReplicationTask(
        checkpoint_item_id=f"00000000-0000-4000-8000-{n:012d}",
        project_id=project,
        destination_region=region,
        destination_project_id=f"{n % 3:032d}",  # changes under a (project, region)
        source_region="cn-north-1" if n % 5 else "cn-north-4",
        destination_vault_id=f"vault-{n % 2}" if cbr else None,
        line=n + 2 if n % 7 else 0,
    )


_OUTCOMES = (
    Outcome(ResultStatus.REPLICATED, "042cd047-a7c9-4905-a859-402950ac8440", http_status=200),
    Outcome(ResultStatus.REPLICATED, "142cd047-a7c9-4905-a859-402950ac8441", http_status=202),
    Outcome(ResultStatus.REPLICATED, "242cd047-a7c9-4905-a859-402950ac8442", attempts=3),
    Outcome(
        ResultStatus.ALREADY_REPLICATED,
        "342cd047-a7c9-4905-a859-402950ac8443",
        http_status=400,
        error_code="BackupService.1009",
        error_msg="already",
    ),
    Outcome(ResultStatus.FAILED, http_status=403, error_code="X.1", error_msg="no", attempts=1),
    Outcome(ResultStatus.GAVE_UP, error_msg="timed out", attempts=8, outcome_unknown=True),
    Outcome(ResultStatus.GAVE_UP, error_msg="not sent", attempts=0),
)


async def _write(path: Path, *, compact: bool, cbr: bool, pairs: int) -> None:
    async with LedgerWriter(path, fsync=False) as writer:
        recorder = LedgerRecorder(writer, "run-1", cbr=cbr, compact=compact)
        await recorder.run_started(
            RunStarted(
                manifest="/m.csv", source="manifest", settings={}, version="t", retry_failed=False
            )
        )
        for n in range(pairs):
            task = _task(n, cbr=cbr)
            if n % 4 == 0:
                await recorder.attempt_ahead(task).durable()
            else:
                await recorder.attempt(task, 1 + n % 3)
            if n % 11 == 10:
                continue  # in flight when the run stopped: no result
            recorder.result(task, _OUTCOMES[n % len(_OUTCOMES)], started=1_700_000_000.5 + n)
        recorder.rejected(
            manifest="/m.csv",
            line=99,
            field="destination_region",
            reason="bad",
            ids={"checkpoint_item_id": "x", "project_id": PROJECTS[0]},
        )
        await recorder.run_finished(
            RunFinished(
                counts={},
                rejected=1,
                duplicates=0,
                conflicts=0,
                already_done=0,
                interrupted=False,
                reason=None,
                duration_s=1.0,
                exit_code=0,
                requests=pairs,
                retries=0,
                pace={},
            )
        )


def _clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same times for both ledgers: 1.7e9 s plus irregular microseconds per call."""
    ticks = itertools.count()

    def now() -> float:
        n = next(ticks)
        return 1_700_000_000 + n * 0.618034 + (n % 7) * 1e-6

    monkeypatch.setattr(time, "time", now)


def _pair(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, cbr: bool) -> tuple[Path, Path]:
    verbose, compact = tmp_path / "verbose.jsonl", tmp_path / "compact.jsonl"
    for path, flag in ((verbose, False), (compact, True)):
        _clock(monkeypatch)
        anyio.run(functools.partial(_write, path, compact=flag, cbr=cbr, pairs=120))
    return verbose, compact


@pytest.mark.parametrize("cbr", [False, True], ids=["csbs", "cbr"])
def test_compact_lines_read_back_as_the_verbose_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cbr: bool
) -> None:
    verbose, compact = _pair(tmp_path, monkeypatch, cbr=cbr)
    assert compact.stat().st_size < verbose.stat().st_size * 0.7
    raw = [orjson.loads(line) for line in compact.read_bytes().splitlines()]
    assert all("run_id" not in r for r in raw if r["event"] in ("attempt", "result") and "t" in r)

    expected, got = list(iter_records(verbose)), list(iter_records(compact))
    assert got == expected

    assert report_dict(build_report(iter_records(compact), run="all")) == report_dict(
        build_report(iter_records(verbose), run="all")
    )
    assert first_attempts_of(compact) == first_attempts_of(verbose)


@pytest.mark.parametrize("cbr", [False, True], ids=["csbs", "cbr"])
def test_compact_and_verbose_fold_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cbr: bool
) -> None:
    verbose, compact = _pair(tmp_path, monkeypatch, cbr=cbr)
    keys = sorted(
        {
            (
                r["project_id"],
                r.get("checkpoint_item_id") or r["backup_id"],
                r["destination_region"],
            )
            for r in iter_records(verbose)
            if r["event"] in ("attempt", "result") and r.get("project_id")
        }
    )

    def view(history: History) -> Any:
        return (
            [(history.status(k), history.unknown_outcome(k), history.record_id(k)) for k in keys],
            sorted(history.counts().items()),
            history.unknown_outcomes(),
            history.rejected,
            history.skipped,
            history.runs,
        )

    for record_ids in (True, False):
        assert view(History.load(compact, record_ids=record_ids)) == view(
            History.load(verbose, record_ids=record_ids)
        )

    # A snapshot may end mid-run: the fold after it reads compact lines without their
    # run_started, which the history needs no expansion for.
    half = len(compact.read_bytes()) // 2
    cut = compact.read_bytes()[:half]
    cut = cut[: cut.rfind(b"\n") + 1]
    partial = tmp_path / "partial.jsonl"
    partial.write_bytes(cut)
    history = History.load(partial, record_ids=False)
    history.save_snapshot(partial)
    with partial.open("ab") as out:
        out.write(compact.read_bytes()[len(cut) :])
    resumed = History.load(partial, record_ids=False)
    assert resumed.snapshot_end == len(cut)
    assert view(resumed) == view(History.load(verbose, record_ids=False))


def test_a_compact_line_without_its_run_started_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, compact = _pair(tmp_path, monkeypatch, cbr=False)
    lines = compact.read_bytes().splitlines(keepends=True)
    headless = tmp_path / "headless.jsonl"
    headless.write_bytes(b"".join(lines[1:]))
    with pytest.raises(LedgerError, match="without a run_started"):
        list(iter_records(headless))
    # The fold needs no expansion: it reads them as they are.
    assert History.load(headless).counts()
    assert next(iter(LedgerReader(headless, expand=False)))["t"] >= 0


def _size(path: Path) -> int:
    return os.path.getsize(path)


@pytest.mark.anyio
async def test_a_simulated_run_costs_at_most_500_bytes_a_finished_pair(
    make_simulator: MakeSimulator, tmp_path: Path
) -> None:
    async with make_simulator(items=700) as sim:
        manifest = tmp_path / "m.csv"
        rows = estate_manifest(sim, manifest, destinations=2)
        ledger = tmp_path / "run.jsonl"
        result = await run_in_process(sim, manifest, ledger)
    results = [r for r in iter_records(ledger) if r["event"] == "result"]
    finished = len(
        {(r["project_id"], r["checkpoint_item_id"], r["destination_region"]) for r in results}
    )
    assert rows >= 800
    assert finished == rows == len(results)
    per_pair = _size(ledger) / finished
    assert per_pair <= 500, f"{per_pair:.1f} bytes a finished pair"
    # ... and its readers still see every field of the verbose lines
    assert all(
        r["run_id"] == result.run_id and r["started_at"] <= r["finished_at"] for r in results
    )
    assert all(r["destination_project_id"] and r["source_region"] for r in results)
