"""``python -m bench --only pace``: how much of an undisclosed rate limit a run uses.

The simulator throttles at a rate the tool is not told (a token bucket per source project,
burst 20, 429 ``APIG.0308`` without ``Retry-After``); ``run`` gets no ``--rate``. Per case:

* allowance used = ideal time / actual time, where the ideal is pairs / (rate x projects);
* refused = replicate requests answered 429 / replicate requests (at the simulator).

Then the limit drops from 100 to 40 mid-run and returns to 100 (``POST /_sim/faults``): the
rate of replicate arrivals at the simulator, per second, is plotted as text, and the time the
run takes to follow each change is measured.
"""

from __future__ import annotations

import csv
import os
import threading
import time
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path
from typing import Any

import orjson
import requests

from bench.procs import SimProcess, python_cmd, run_measured
from orchestrator.simulator import Estate, ManualClock, SimulatorConfig
from orchestrator.simulator.sample import MANIFEST_COLUMNS

__all__ = ["pace"]

_BURST = 20
#: Goals (issue 20) and the moonshot.
_USED, _REFUSED = 0.90, 0.05
_FOLLOW_S = 10.0


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    rate: float
    latency: float
    concurrency: int
    projects: int
    pairs: int


@dataclass(frozen=True, slots=True)
class Outcome:
    case: Case
    duration_s: float
    replicate: int
    refused: int
    ok: int
    exit_code: int
    bins: list[int]
    bin_s: float
    first_bin_at: float  # monotonic time of bins[0]

    @property
    def ideal_s(self) -> float:
        return self.case.pairs / (self.case.rate * self.case.projects)

    @property
    def used(self) -> float:
        return self.ideal_s / self.duration_s if self.duration_s else 0.0

    @property
    def refused_share(self) -> float:
        return self.refused / self.replicate if self.replicate else 0.0


def _manifest(work: Path, pairs: int, projects: int) -> tuple[Path, int]:
    """``pairs`` rows from the first ``projects`` source projects of the estate, interleaved
    (project 1, 2, 3, 1, ...) so that every project's bucket is used from the start; the
    simulator's item count that generates them (the same seed builds the same estate)."""
    # ~82 % of items are available, 3 destinations each, ~12 % already replicated: about two
    # pairs an item; items are spread over the estate's three projects.
    items = pairs * 3 // (2 * projects) + 300
    path = work / f"pace-{pairs}-{projects}.csv"
    config = SimulatorConfig.from_knobs(items=items, auth="none")
    estate = Estate(config, ManualClock())
    capabilities = estate.capabilities()
    per_project: list[list[tuple[str, ...]]] = []
    for project in estate.projects[:projects]:
        rows: list[tuple[str, ...]] = []
        for item in estate.items_of(project.id):
            if item.status != "available":
                continue
            for region in capabilities[project.region][:3]:
                if estate.latest_record(item.id, region) is None:
                    dest = estate.destination_projects[region]
                    rows.append((item.id, project.id, project.region, region, dest))
        per_project.append(rows)
    chosen = [row for group in zip_longest(*per_project) for row in group if row is not None]
    if len(chosen) < pairs:
        raise RuntimeError(f"the estate gave {len(chosen)} pairs, wanted {pairs}")
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(MANIFEST_COLUMNS)
        writer.writerows(chosen[:pairs])
    return path, items


def _last_run_finished(ledger: Path) -> dict[str, Any]:
    last: dict[str, Any] = {}
    with ledger.open("rb") as handle:
        for line in handle:
            if b'"run_finished"' in line:
                last = orjson.loads(line)
    return last


def _run(work: Path, case: Case, changes: tuple[tuple[float, float], ...] = ()) -> Outcome:
    manifest, items = _manifest(work, case.pairs, case.projects)
    sim_flags = ["--items", str(items), "--auth", "none", "--latency", f"{case.latency:g}"]
    sim_flags += ["--throttle-rate", f"{case.rate:g}", "--throttle-burst", str(_BURST)]
    with SimProcess(sim_flags) as sim:
        ledger = work / f"ledger-{len(list(work.iterdir()))}.jsonl"
        env = dict(os.environ, HUAWEICLOUD_SDK_AK=sim.info["ak"], HUAWEICLOUD_SDK_SK=sim.info["sk"])
        cmd = python_cmd("-m", "orchestrator", "run", "--manifest", str(manifest))
        cmd += ["--ledger", str(ledger), "--endpoint", sim.base_url, "--no-progress"]
        cmd += ["--log-format", "json", "--concurrency", str(case.concurrency)]
        cmd += ["--per-region", str(case.concurrency)]
        timers = [threading.Timer(at, _set_rate, (sim.base_url, rate)) for at, rate in changes]
        for timer in timers:
            timer.start()
        measured = run_measured(cmd, env=env)
        for timer in timers:
            timer.cancel()
        counters = sim.counters()
    if measured.returncode not in (0, 3):
        tail = measured.stderr.strip().splitlines()[-3:]
        raise RuntimeError(f"run exited {measured.returncode}: {' | '.join(tail)}")
    finished = _last_run_finished(ledger)
    ledger.unlink(missing_ok=True)
    by_status = {}
    for route, statuses in counters["requests"].items():
        if route.endswith("/replicate"):
            by_status = statuses
    arrivals = counters["replicate_arrivals"]
    return Outcome(
        case,
        duration_s=float(finished.get("duration_s", 0.0)),
        replicate=sum(by_status.values()),
        refused=by_status.get("429", 0),
        ok=int(finished.get("counts", {}).get("replicated", 0)),
        exit_code=measured.returncode,
        bins=list(arrivals["bins"]),
        bin_s=float(arrivals["bin_s"]),
        first_bin_at=float(arrivals.get("first_bin") or 0) * float(arrivals["bin_s"]),
    )


_CHANGED: list[tuple[float, float]] = []  # (monotonic time, new rate) of the last run


def _set_rate(base_url: str, rate: float) -> None:
    answer = requests.post(f"{base_url}/_sim/faults", json={"throttle_rate": rate}, timeout=10)
    answer.raise_for_status()
    _CHANGED.append((time.monotonic(), rate))


def _per_second(outcome: Outcome) -> list[int]:
    per = round(1.0 / outcome.bin_s)
    bins = outcome.bins
    return [sum(bins[i : i + per]) for i in range(0, len(bins), per)]


def _plot(series: list[int], limits: list[float], width: int = 50) -> list[str]:
    """One text line per second: a bar of replicate arrivals, ``|`` at the limit."""
    top = max([*series, *limits, 1])
    lines = []
    for second, (value, limit) in enumerate(zip(series, limits, strict=False)):
        bar = ["#" if i < round(value / top * width) else " " for i in range(width + 1)]
        mark = min(width, round(limit / top * width))
        bar[mark] = "|" if bar[mark] == " " else "+"
        lines.append(f"{second:3d}s {value:4d}/s {''.join(bar).rstrip()}")
    return lines


def pace(work: Path, sizes: Any) -> Any:
    """The suite (``sizes`` is ignored: every case lasts about 15 s of rate-bound time)."""
    from bench.suites import Section  # noqa: PLC0415 - suites imports this module

    del sizes
    section = Section(
        "Pace: an undisclosed rate limit, no --rate",
        "simulate --throttle-rate R --throttle-burst 20 --latency L --auth none; "
        "run --concurrency C --per-region C (no --rate); 3 destination regions",
        header=(
            "case",
            "--concurrency",
            "pairs",
            "ideal s",
            "actual s",
            "allowance used",
            "replicates refused",
            "replicates",
        ),
    )
    cases = (
        [Case("100/s 10 ms", 100.0, 0.01, c, 1, 1500) for c in (16, 64, 256)]
        + [Case("50/s 40 ms", 50.0, 0.04, c, 1, 750) for c in (16, 64, 256)]
        + [Case("3 projects x 50/s 10 ms", 50.0, 0.01, 64, 3, 2250)]
    )
    results = []
    for case in cases:
        got = _run(work, case)
        results.append(got)
        print(
            f"  {case.name:24} c={case.concurrency:<4} used {got.used:6.1%} refused "
            f"{got.refused_share:6.2%} ({got.duration_s:.1f}s, ok {got.ok}/{case.pairs})",
            flush=True,
        )
        section.rows.append(
            (
                case.name,
                str(case.concurrency),
                f"{case.pairs:,}",
                f"{got.ideal_s:.1f}",
                f"{got.duration_s:.1f}",
                f"{got.used:.1%}",
                f"{got.refused_share:.2%}",
                f"{got.replicate:,}",
            )
        )
    worst_used = min(r.used for r in results)
    worst_refused = max(r.refused_share for r in results)
    section.verdict(
        f"allowance used >= {_USED:.0%} in every case", f"min {worst_used:.1%}", worst_used >= _USED
    )
    section.verdict(
        f"replicates refused <= {_REFUSED:.0%} in every case",
        f"max {worst_refused:.2%}",
        worst_refused <= _REFUSED,
    )
    section.verdict("every pair replicated", "", all(r.ok == r.case.pairs for r in results))
    _drop_and_recover(work, section)
    return section


def _drop_and_recover(work: Path, section: Any) -> None:
    drop_at, back_at = 10.0, 22.0
    case = Case("100 -> 40 -> 100", 100.0, 0.01, 64, 1, 2600)
    _CHANGED.clear()
    got = _run(work, case, ((drop_at, 40.0), (back_at, 100.0)))
    series = _per_second(got)
    # The arrival bins start at the first replicate; the changes are placed on that axis
    # (the simulator's monotonic clock is ours: CLOCK_MONOTONIC is system-wide on Linux).
    changes = [(at - got.first_bin_at, rate) for at, rate in _CHANGED]
    limits = [
        next((r for at, r in reversed(changes) if at <= s), 100.0) for s in range(len(series))
    ]
    down = _followed(series, changes[0][0], lambda v: v <= 40 * 1.1) if changes else None
    up = _followed(series, changes[1][0], lambda v: v >= 100 * 0.9) if len(changes) > 1 else None
    section.verdict(
        f"follows the drop to 40 within {_FOLLOW_S:g} s",
        "never" if down is None else f"{down:.0f} s",
        down is not None and down <= _FOLLOW_S,
    )
    section.verdict(
        f"follows the return to 100 within {_FOLLOW_S:g} s",
        "never" if up is None else f"{up:.0f} s",
        up is not None and up <= _FOLLOW_S,
    )
    section.notes.append(
        f"Drop and recovery: {case.pairs:,} pairs, --concurrency 64, 10 ms; the limit set "
        f"to 40 at {changes[0][0]:.1f} s and back to 100 at {changes[1][0]:.1f} s "
        f"(seconds since the first replicate); {got.refused_share:.2%} of {got.replicate:,} "
        "replicates refused. Replicate arrivals per second at the simulator (`|`: the limit):"
        if len(changes) > 1
        else "Drop and recovery: the rate changes did not happen"
    )
    plot = _plot(series, limits)
    section.notes.append("\n```\n" + "\n".join(plot) + "\n```")
    print(section.notes[-2], *plot, sep="\n", flush=True)


def _followed(series: list[int], at: float, ok: Any) -> float | None:
    """Seconds from ``at`` until two consecutive whole seconds satisfy ``ok``."""
    start = int(at) + 1
    for s in range(start, len(series) - 1):
        if ok(series[s]) and ok(series[s + 1]):
            return s - at
    return None
