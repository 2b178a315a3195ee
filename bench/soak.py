"""The soak: a million pairs end to end, then ``report`` and ``resume`` over the result.

``python -m bench --only soak`` (``BENCH_SOAK_PAIRS`` scales it down for a smoke run). One
run of ours against a zero-latency simulator with 1 % 503s over several destination
regions; from its ledger, the throughput of the first and last tenth of the pairs (by their
results' timestamps); its peak RSS; the ledger's bytes per pair; the time of ``report`` and
of ``resume`` start-up over it; and the CPU per request of ours against the bare-aiohttp
floor, measured on the same machine in the same sitting.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Protocol

import orjson

from bench.procs import Measured, SimProcess, python_cmd, run_measured

__all__ = ["soak"]

DEFAULT_PAIRS = 1_000_000
#: The bare-aiohttp floor's size: large enough that start-up is a small share of its CPU.
FLOOR_PAIRS = 100_000
CONCURRENCY = 64

#: bench.suites._manifest: the CSV of ``n`` pairs of the simulator's estate.
ManifestOf = Callable[[Path, int], Path]


class SectionLike(Protocol):
    """What bench.suites.Section offers (it imports this module, not the other way)."""

    rows: list[tuple[str, ...]]
    notes: list[str]

    def verdict(self, target: str, got: str, met: bool) -> None: ...


def soak(work: Path, manifest_of: ManifestOf, section: SectionLike) -> None:
    """Fill ``section`` (a :class:`bench.suites.Section`) with the soak's figures."""
    pairs = int(os.environ.get("BENCH_SOAK_PAIRS", DEFAULT_PAIRS))
    manifest = manifest_of(work, pairs)
    ledger = work / "soak.jsonl"
    sim_flags = ["--items", str(pairs // 2 + 100), "--auth", "none", "--p503", "0.01"]
    flags = ["--concurrency", str(CONCURRENCY), "--per-region", str(CONCURRENCY)]
    with SimProcess(sim_flags) as sim:
        env = dict(os.environ, HUAWEICLOUD_SDK_AK=sim.info["ak"], HUAWEICLOUD_SDK_SK=sim.info["sk"])
        cmd = python_cmd("-m", "orchestrator", "run", "--manifest", str(manifest))
        cmd += ["--ledger", str(ledger), "--endpoint", sim.base_url, "--no-progress"]
        cmd += ["--log-format", "json", *flags]
        run = run_measured(cmd, env=env)
        print(
            f"  run: exit {run.returncode}, {run.wall_s:.0f} s, {run.cpu_s:.0f} s CPU", flush=True
        )
    first, last, results, requests = _tenths(ledger)
    size = ledger.stat().st_size

    report = run_measured(
        python_cmd("-m", "orchestrator", "report", str(ledger), "--format", "json"), env=env
    )
    resume_cmd = python_cmd("-m", "orchestrator", "resume", "--ledger", str(ledger))
    resume_cmd += ["--endpoint", "http://127.0.0.1:9", "--no-progress", "--log-format", "json"]
    resume = run_measured(resume_cmd, env=env)  # every pair done: load + plan, then exit
    floor = _floor(work, manifest_of)

    ours_us = run.cpu_s / max(requests, 1) * 1e6
    floor_us = floor.cpu_s / FLOOR_PAIRS * 1e6
    section.rows.extend(
        [
            ("pairs (results in the ledger)", f"{results:,}"),
            (
                "run exit code / wall / CPU",
                f"{run.returncode} / {run.wall_s:.0f} s / {run.cpu_s:.0f} s",
            ),
            ("throughput, first tenth of the pairs", f"{first:,.0f} pairs/s"),
            ("throughput, last tenth of the pairs", f"{last:,.0f} pairs/s"),
            ("peak RSS of the run", f"{run.max_rss_mb:.0f} MB"),
            ("ledger size / bytes per pair", f"{size / 1e6:.0f} MB / {size / max(results, 1):.0f}"),
            ("report (exit, wall, peak RSS)", _brief(report)),
            ("resume start-up (exit, wall, peak RSS)", _brief(resume)),
            ("CPU per request, ours (total, start-up included)", f"{ours_us:.0f} us"),
            (f"CPU per request, bare aiohttp floor ({FLOOR_PAIRS:,})", f"{floor_us:.0f} us"),
        ]
    )
    for figure, value in section.rows:
        print(f"  {figure}: {value}", flush=True)
    section.verdict(
        "last tenth no slower than the first by more than 10 %",
        f"{last / first:.2f}x" if first else "-",
        bool(first) and last >= 0.9 * first,
    )
    section.verdict("peak RSS under 400 MB", f"{run.max_rss_mb:.0f} MB", run.max_rss_mb < 400)
    section.verdict("every pair has a result", f"{results:,} of {pairs:,}", results == pairs)
    section.verdict("resume start-up exits 0", str(resume.returncode), resume.returncode == 0)
    section.notes.append(
        f"Requests counted by the run: {requests:,}. Throughput per tenth: the number of "
        "pairs in that tenth (by result order) over the time between its first and last "
        "result timestamps. CPU is user+sys of the whole process; the floor is "
        f"`bench.baselines aiohttp` over {FLOOR_PAIRS:,} pairs against its own fresh "
        "simulator (no ledger, no retries, no logs)."
    )


def _tenths(ledger: Path) -> tuple[float, float, int, int]:
    """Pairs per second over the first and the last tenth of the results, the number of
    results, and the requests the run counted."""
    stamps: list[float] = []
    requests = 0
    with ledger.open("rb") as handle:
        for line in handle:
            if b'"event":"result"' in line and b'"rejected"' not in line:
                at = line.index(b'"ts":"') + 6
                stamp = line[at : line.index(b'"', at)].decode()
                stamps.append(datetime.fromisoformat(stamp).timestamp())
            elif b'"run_finished"' in line:
                requests = int(orjson.loads(line).get("requests", 0))
    stamps.sort()
    n = len(stamps)
    tenth = n // 10
    if tenth < 2:
        return 0.0, 0.0, n, requests

    def rate(part: list[float]) -> float:
        return (len(part) - 1) / max(part[-1] - part[0], 1e-6)

    return rate(stamps[:tenth]), rate(stamps[-tenth:]), n, requests


def _floor(work: Path, manifest_of: ManifestOf) -> Measured:
    manifest = manifest_of(work, FLOOR_PAIRS)
    with SimProcess(["--items", str(FLOOR_PAIRS // 2 + 100), "--auth", "none"]) as sim:
        env = dict(os.environ, BENCH_SK=sim.info["sk"])
        cmd = python_cmd("-m", "bench.baselines", "aiohttp", "--base-url", sim.base_url)
        cmd += ["--ak", sim.info["ak"], "--manifest", str(manifest)]
        cmd += ["--concurrency", str(CONCURRENCY)]
        return run_measured(cmd, env=env)


def _brief(m: Measured) -> str:
    return f"{m.returncode}, {m.wall_s:.2f} s, {m.max_rss_mb:.0f} MB"
