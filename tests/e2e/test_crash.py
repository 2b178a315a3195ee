"""Crash safety: ``kill -9`` a real run at seeded points, resume, and nothing is lost or done
twice; a ledger that cannot be written stops the run with exit 8 and stays readable.

The kill test runs the simulator in its own process (so killing the tool cannot hide a
double send inside one event loop) and kills the tool once the ledger has grown by a seeded
number of lines: the kill points come from the seed, not from wall-clock luck. At the end
every pair must have exactly one final success, carrying the record id the simulator
itself reports for that pair, and the simulator must never have created a replica twice.
"""

from __future__ import annotations

import errno
import os
import random
import subprocess
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from orchestrator.cli import main as cli
from orchestrator.exitcodes import ExitCode
from orchestrator.models import FINAL_SUCCESS
from tests.helpers.env import subprocess_env
from tests.helpers.runkit import (
    SimProcess,
    final_results,
    ledger_lines,
    results_by_pair,
    run_cli,
    start_cli,
    wait_for,
)

_SUCCESS = {str(s) for s in FINAL_SUCCESS}


def _line_count(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


@dataclass
class _Crashes:
    kills: int = 0  # runs killed while still running
    finished_early: int = 0  # runs that ended before their kill point
    points: list[int] = field(default_factory=list)


def _grown_or_exited(ledger: Path, target: int, proc: subprocess.Popen[str]) -> Callable[[], bool]:
    return lambda: _line_count(ledger) >= target or proc.poll() is not None


def _fast_backoff(path: Path) -> Path:
    """A config with millisecond backoff: a kill point must never wait behind a 30 s retry."""
    path.write_text("[retry]\nbase_delay = 0.005\nmax_delay = 0.05\n")
    return path


def _crash_repeatedly(
    sim: SimProcess, manifest: Path, ledger: Path, *, kills: int, seed: int, max_new: int
) -> _Crashes:
    """Start ``run`` or ``resume`` and SIGKILL it once the ledger has grown by a seeded
    number of lines (0 = as soon as the process exists), ``kills`` times."""
    rng = random.Random(seed)
    crashes = _Crashes()
    env = subprocess_env(sim)
    common = [
        "--ledger",
        str(ledger),
        "--log-format",
        "json",
        "--no-progress",
        "--concurrency",
        "8",
        "--config",
        str(_fast_backoff(ledger.with_name("fast.toml"))),
    ]
    while crashes.kills < kills:
        if ledger.exists() and rng.random() < 0.5:
            args = ["resume", *common]
        else:
            args = ["run", "--manifest", str(manifest), "--endpoint", sim.base_url, *common]
        # Mostly early in a run (first wave in flight), sometimes well into it.
        grow = rng.randint(0, max_new) if rng.random() < 0.7 else rng.randint(max_new, 5 * max_new)
        target = _line_count(ledger) + grow
        crashes.points.append(target)
        proc = start_cli(args, env)
        wait_for(_grown_or_exited(ledger, target, proc))
        if proc.poll() is None:
            proc.kill()
            crashes.kills += 1
        else:
            crashes.finished_early += 1
        proc.communicate(timeout=30)
        assert crashes.finished_early <= kills, "the kill points overshoot the run: lower max_new"
    return crashes


def _check_against_the_simulator(sim: SimProcess, ledger: Path, pairs: int) -> None:
    final = final_results(ledger)
    assert len(final) == pairs
    live = sim.live_records()
    for key, lines in results_by_pair(ledger).items():
        successes = [line for line in lines if line["status"] in _SUCCESS]
        assert len(successes) == 1, f"{key}: {[line['status'] for line in lines]}"
        _, item, region = key
        assert successes[0]["replication_record_id"] == live[(item, region)], key
    counters = sim.counters()
    assert counters["replications"]["max_per_pair"] <= 1, "a replica was created twice"
    refused = Counter(
        (p["checkpoint_item_id"], p["destination_region"])
        for p in counters["duplicates_rejected"]["by_pair"]
        for _ in range(p["count"])
    )
    assert max(refused.values(), default=0) <= 1, "a pair was sent again after a refusal"
    created = {
        (p["checkpoint_item_id"], p["destination_region"])
        for p in counters["replications"]["by_pair"]
    }
    already = {(k[1], k[2]) for k, f in final.items() if f["status"] == "already_replicated"}
    assert not created & already, "a pair was both created and found already replicated"


def _left_unknown(lines: list[dict[str, Any]]) -> int:
    """Attempts that a run left without a result (it was killed with them in flight)."""
    open_attempts: set[tuple[object, object, object]] = set()
    unknown = 0
    for line in lines:
        key = (
            line.get("project_id"),
            line.get("checkpoint_item_id"),
            line.get("destination_region"),
        )
        if line["event"] == "run_started":
            unknown += len(open_attempts)
            open_attempts.clear()
        elif line["event"] == "attempt":
            open_attempts.add(key)
        elif line["event"] == "result":
            open_attempts.discard(key)
    return unknown


def _kill_and_resume(
    tmp_path: Path, *, kills: int, seed: int, sim_args: list[str], items: int = 100
) -> None:
    manifest, ledger = tmp_path / "m.csv", tmp_path / "ledger.jsonl"
    with SimProcess.start("--items", str(items), "--seed", str(seed), *sim_args) as sim:
        env = subprocess_env(sim)
        made = run_cli(
            [
                "simulate",
                "--items",
                str(items),
                "--seed",
                str(seed),
                "--write-manifest",
                str(manifest),
                "--manifest-destinations",
                "3",
            ],
            env,
        )
        assert made.returncode == 0, made.stderr
        pairs = sum(1 for _ in manifest.open()) - 1

        crashes = _crash_repeatedly(sim, manifest, ledger, kills=kills, seed=seed, max_new=12)

        finish = run_cli(
            ["resume", "--ledger", str(ledger), "--log-format", "json", "--no-progress"], env
        )
        assert finish.returncode == ExitCode.OK, (finish.stdout, finish.stderr)
        assert crashes.kills == kills
        lines = ledger_lines(ledger)  # every line parses: torn tails were repaired
        assert lines[-1]["event"] == "run_finished"
        _check_against_the_simulator(sim, ledger, pairs)
        assert _left_unknown(lines) >= kills // 2, "the kills should land with requests in flight"


def test_kill_9_at_seeded_points_then_resume(tmp_path: Path) -> None:
    _kill_and_resume(tmp_path, kills=20, seed=7, sim_args=["--latency", "0.01"])


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("CSBS_SLOW_TESTS") != "1", reason="set CSBS_SLOW_TESTS=1")
@pytest.mark.parametrize("seed", [11, 12, 13, 14])
def test_kill_9_many_times_with_faults(tmp_path: Path, seed: int) -> None:
    """More kill points (240 over the seeds), with 503s and connections cut after the
    request was applied."""
    _kill_and_resume(
        tmp_path,
        kills=60,
        seed=seed,
        items=400,
        sim_args=["--latency", "0.01", "--p503", "0.1", "--p-apply-drop", "0.05"],
    )


# -- a ledger that cannot be written ------------------------------------------------------


def test_disk_full_stops_the_run_with_exit_8_and_a_readable_ledger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """fsync fails (ENOSPC) partway: the run stops at once with one clear line and exit 8;
    the lines already on disk still parse, and a resume finishes the job."""
    manifest, ledger = tmp_path / "m.csv", tmp_path / "ledger.jsonl"
    real_fsync = os.fsync
    calls = Counter[str]()

    def failing_fsync(fd: int) -> None:
        calls["fsync"] += 1
        if calls["fsync"] > 8:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    with SimProcess.start("--items", "60", "--latency", "0.002") as sim:
        for key, value in subprocess_env(sim).items():
            monkeypatch.setenv(key, value)
        write = ["simulate", "--items", "60", "--write-manifest", str(manifest)]
        run_cli(write, subprocess_env(sim))
        args = ["--ledger", str(ledger), "--log-format", "json", "--no-progress"]
        monkeypatch.setattr(os, "fsync", failing_fsync)

        code = cli.main(
            [
                "run",
                "--manifest",
                str(manifest),
                "--endpoint",
                sim.base_url,
                "--concurrency",
                "2",
                *args,
            ]
        )

        err = capsys.readouterr().err
        assert code == ExitCode.LEDGER, (err, calls)
        assert "No space left on device" in err
        assert "Traceback" not in err
        assert ledger_lines(ledger)  # readable: every line on disk parses

        monkeypatch.setattr(os, "fsync", real_fsync)
        assert cli.main(["resume", *args]) == ExitCode.OK
        _check_against_the_simulator(sim, ledger, sum(1 for _ in manifest.open()) - 1)
