"""Graceful shutdown with real signals to a real run: the first SIGINT/SIGTERM stops taking
pairs and lets the requests in flight finish; a second one (or the grace period running out)
cancels at once, leaving attempts without results that resume reconciles. ``--max-duration``
is the same soft stop on a timer. Every way ends with exit 6 and a ledger that resumes to
completion without a replica made twice."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from orchestrator.exitcodes import ExitCode
from tests.conftest import MakeSimulator
from tests.helpers.env import subprocess_env
from tests.helpers.runkit import (
    SimProcess,
    estate_manifest,
    final_results,
    ledger_lines,
    results_by_pair,
    run_cli,
    run_in_process,
    start_cli,
    wait_for,
)

_SUCCESS = {"replicated", "already_replicated"}


def _runs(ledger: Path) -> list[list[dict[str, Any]]]:
    """The ledger's lines grouped by run, in order."""
    runs: list[list[dict[str, Any]]] = []
    for line in ledger_lines(ledger):
        if line["event"] == "run_started":
            runs.append([])
        runs[-1].append(line)
    return runs


def _key(line: dict[str, Any]) -> tuple[str, str, str]:
    return (line["project_id"], line["checkpoint_item_id"], line["destination_region"])


def _attempts_without_result(run: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    attempted = {_key(line) for line in run if line["event"] == "attempt"}
    answered = {_key(line) for line in run if line["event"] == "result"}
    return attempted - answered


def _count(path: Path, text: bytes) -> int:
    try:
        return path.read_bytes().count(text)
    except FileNotFoundError:
        return 0


def _start_run(sim: SimProcess, manifest: Path, ledger: Path, log: Path, *extra: str) -> Any:
    args = ["run", "--manifest", str(manifest), "--endpoint", sim.base_url, "--ledger"]
    args += [str(ledger), "--log-format", "json", "--log-file", str(log), "--no-progress"]
    return start_cli([*args, "--concurrency", "4", *extra], subprocess_env(sim))


def _finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out, err


def _resume_and_check(sim: SimProcess, manifest: Path, ledger: Path) -> None:
    """Resume to completion: each pair exactly one success with the simulator's record id."""
    sim.set_faults(latency_s=0.0)
    done = run_cli(["resume", "--ledger", str(ledger), "--no-progress"], subprocess_env(sim))
    assert done.returncode == ExitCode.OK, done.stderr
    pairs = sum(1 for _ in manifest.open()) - 1
    live = sim.live_records()
    results = results_by_pair(ledger)
    assert len(results) == pairs
    for (_, item, region), lines in results.items():
        successes = [line for line in lines if line["status"] in _SUCCESS]
        assert len(successes) == 1
        assert successes[0]["replication_record_id"] == live[(item, region)]
    assert sim.counters()["replications"]["max_per_pair"] <= 1


@pytest.fixture
def estate(tmp_path: Path) -> tuple[Path, Path, Path]:
    manifest = tmp_path / "m.csv"
    made = run_cli(
        ["simulate", "--items", "60", "--write-manifest", str(manifest)], {"PATH": "/usr/bin"}
    )
    assert made.returncode == 0, made.stderr
    return manifest, tmp_path / "ledger.jsonl", tmp_path / "log.jsonl"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_first_signal_lets_requests_in_flight_finish(
    estate: tuple[Path, Path, Path], signum: signal.Signals
) -> None:
    manifest, ledger, log = estate
    with SimProcess.start("--items", "60", "--latency", "0.2") as sim:
        proc = _start_run(sim, manifest, ledger, log)
        wait_for(lambda: _count(ledger, b'"event":"attempt"') >= 6, timeout=30)
        proc.send_signal(signum)
        code, out, _ = _finish(proc)

        assert code == ExitCode.INTERRUPTED
        assert "interrupted: run `resume` to finish" in out
        (run,) = _runs(ledger)
        finished = run[-1]
        assert finished["event"] == "run_finished"
        assert (finished["interrupted"], finished["reason"], finished["exit_code"]) == (
            True,
            "signal",
            6,
        )
        assert not _attempts_without_result(run), "a request in flight was abandoned"
        statuses = {line["status"] for line in run if line["event"] == "result"}
        assert statuses <= _SUCCESS
        assert len(final_results(ledger)) < sum(1 for _ in manifest.open()) - 1
        _resume_and_check(sim, manifest, ledger)


@pytest.mark.parametrize(
    "how", ["second signal", "grace period over"], ids=["second-signal", "grace-expired"]
)
def test_cancelling_leaves_a_consistent_resumable_ledger(
    estate: tuple[Path, Path, Path], how: str
) -> None:
    """Requests in flight take 1.5 s; the run is cancelled long before they could answer."""
    manifest, ledger, log = estate
    grace = "60" if how == "second signal" else "0.05"
    with SimProcess.start("--items", "60", "--latency", "1.5") as sim:
        proc = _start_run(sim, manifest, ledger, log, "--grace-period", grace)
        wait_for(lambda: _count(ledger, b'"event":"attempt"') >= 4, timeout=30)
        proc.send_signal(signal.SIGINT)
        if how == "second signal":
            wait_for(lambda: _count(log, b'"run.stopping"') >= 1, timeout=30)
            proc.send_signal(signal.SIGTERM)
        code, out, _ = _finish(proc)

        assert code == ExitCode.INTERRUPTED
        assert "interrupted" in out
        (run,) = _runs(ledger)
        assert run[-1]["event"] == "run_finished"
        assert run[-1]["interrupted"] is True
        in_flight = _attempts_without_result(run)
        assert len(in_flight) == 4  # --concurrency 4: every one was cut off, none answered
        assert "unknown 4 (in flight at the stop)" in out  # the summary counts them as report
        assert run[-1]["counts"] == {"unknown": 4}
        assert not [line for line in run if line["event"] == "result"]
        # (The simulator drops a request whose client went away before it answered; a real
        # service might apply it anyway, which is why resume asks before it resends.)
        _resume_and_check(sim, manifest, ledger)
        assert sum(sim.replicate_requests().values()) == sum(1 for _ in manifest.open()) - 1


@pytest.mark.anyio
async def test_max_duration_is_a_soft_cut_off(
    make_simulator: MakeSimulator, tmp_path: Path
) -> None:
    manifest, ledger = tmp_path / "m.csv", tmp_path / "ledger.jsonl"
    async with make_simulator(items=60, latency_s=0.05) as sim:
        pairs = estate_manifest(sim, manifest)
        cut = await run_in_process(sim, manifest, ledger, concurrency=2, max_duration=0.3)

        assert cut.exit_code == ExitCode.INTERRUPTED
        assert cut.stats.stop_reason == "deadline"
        (run,) = _runs(ledger)
        assert run[-1]["reason"] == "deadline"
        assert run[-1]["interrupted"] is True
        assert not _attempts_without_result(run), "the cut-off is soft: in-flight ones finish"
        assert 0 < cut.stats.finished < pairs

        sim.update_faults(latency_s=0.0)
        rest = await run_in_process(sim, manifest, ledger)
        assert rest.exit_code == ExitCode.OK
        assert rest.stats.finished == pairs - cut.stats.finished
        assert (
            sim.counters.replications.total()
            + sum(1 for f in final_results(ledger).values() if f["status"] == "already_replicated")
            == pairs
        )
