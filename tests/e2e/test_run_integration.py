"""A whole bulk run over loopback: 2,000 manifest rows, three destination regions, duplicates,
conflicts and invalid rows, against a simulator that answers 30% 503, throttles, drops
connections and applies-then-drops. Run through :func:`run_job`, checked against the
simulator's own state and counters and against the ledger.

Only invariants are asserted (never exact request counts under faults): which request draws
which fault depends on how the pool interleaves them.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from orchestrator.config.settings import RunSettings
from orchestrator.engine.job import run_job
from orchestrator.engine.job_spec import JobResult, JobSpec
from orchestrator.exitcodes import ExitCode
from orchestrator.ledger.file import iter_records
from orchestrator.service.aksk import AkSkSigner
from orchestrator.service.auth import Secret
from orchestrator.service.client import CsbsClient
from orchestrator.service.settings import ClientSettings
from orchestrator.simulator import Simulator
from orchestrator.simulator.csbs import REPLICATE
from orchestrator.simulator.sample import MANIFEST_COLUMNS, estate_rows
from tests.helpers.manifests import write_manifest

MakeSimulator = Callable[..., Simulator]
Pair = tuple[str, str]  # (checkpoint item id, destination region)
pytestmark = pytest.mark.anyio

ROWS = 2000
DUPLICATES, CONFLICTS, INVALID = 60, 40, 50
SOURCE_REGION = "cn-north-1"  # its three capable destinations: cn-east-2, cn-south-1, cn-east-3
FAULTS: dict[str, Any] = {
    "p503": 0.3,
    "p_drop": 0.02,
    "p_apply_drop": 0.03,
    # 900 tokens/s against a clock that moves 1 ms per replicate request (RequestClock):
    # about one in ten is throttled once the burst of 20 is spent, whatever the machine.
    "throttle_rate": 900.0,
    "throttle_burst": 20,
}
#: For the paced run: a real bucket, slower than any machine runs this test unthrottled.
PACED_THROTTLE: dict[str, Any] = {"throttle_rate": 120.0, "throttle_burst": 10}


@dataclass(frozen=True)
class Manifest:
    path: Path
    valid: dict[Pair, int]  # pair -> its first line, for pairs that must be sent
    rejected_lines: set[int]
    conflicted_pairs: int


def build_manifest(sim: Simulator, path: Path, seed: int = 5) -> Manifest:
    """Rows from the simulator's estate, plus exact duplicates, conflicting rows (another
    destination project for a listed pair) and invalid rows, shuffled."""
    rng = random.Random(seed)
    base = list(estate_rows(sim.state, destinations=3))
    base = base[: ROWS - DUPLICATES - CONFLICTS - INVALID]
    assert len(base) == ROWS - DUPLICATES - CONFLICTS - INVALID, "estate too small"
    picked = rng.sample(range(len(base)), DUPLICATES + CONFLICTS)
    duplicated, conflicted = picked[:DUPLICATES], picked[DUPLICATES:]
    rows: list[tuple[str, dict[str, str]]] = [("ok", row) for row in base]
    rows += [("dup", dict(base[i])) for i in duplicated]
    for i in conflicted:
        other = dict(base[i], destination_project_id=f"{rng.getrandbits(128):032x}")
        rows.append(("conflict", other))
    rows += [("invalid", _invalid_row(base[n], n)) for n in range(INVALID)]
    rng.shuffle(rows)

    write_manifest(path, (row for _, row in rows), columns=MANIFEST_COLUMNS)
    conflict_keys = {_pair(base[i]) for i in conflicted}
    valid: dict[Pair, int] = {}
    rejected: set[int] = set()
    for line, (kind, row) in enumerate(rows, start=2):
        if kind == "invalid" or _pair(row) in conflict_keys:
            rejected.add(line)
        else:  # a duplicate may come first: the pair's first line is the one sent
            valid.setdefault(_pair(row), line)
    return Manifest(path, valid, rejected, len(conflict_keys))


def _invalid_row(row: dict[str, str], n: int) -> dict[str, str]:
    broken = dict(row)
    match n % 5:
        case 0:
            broken["checkpoint_item_id"] = f"not-a-uuid-{n}"
        case 1:
            broken["destination_region"] = "CN_EAST_2"
        case 2:
            broken["destination_project_id"] = ""
        case 3:
            broken["project_id"] = "not-a-project"
        case _:
            broken["destination_region"] = broken["source_region"]
    return broken


def _pair(row: dict[str, str]) -> Pair:
    return (row["checkpoint_item_id"], row["destination_region"])


class RequestClock:
    """The simulator's monotonic clock for throttling: 1 ms per replicate request answered so
    far, so that the share of 429s depends on the request count, not on the machine's speed.
    """

    def __init__(self) -> None:
        self.sim: Simulator | None = None

    def __call__(self) -> float:
        if self.sim is None:
            return 0.0
        requests = self.sim.counters.requests.items()
        return 0.001 * sum(n for (route, _), n in requests if route == REPLICATE)


def run_settings(*, pace: bool = True) -> RunSettings:
    return RunSettings.of(
        pace=pace,
        concurrency=32,
        per_region=16,
        retry_base=0.001,
        retry_cap=0.01,
        max_attempts=30,
        retry_budget=100.0,
        grace_period=10.0,
    )


def factory(sim: Simulator) -> Callable[[], AbstractAsyncContextManager[CsbsClient]]:
    def make() -> CsbsClient:
        auth = AkSkSigner(sim.config.ak, Secret(sim.config.sk))
        return CsbsClient(ClientSettings(endpoint=sim.base_url), auth)

    return make


async def run(sim: Simulator, manifest: Manifest, ledger: Path, *, pace: bool = True) -> JobResult:
    spec = JobSpec(
        ledger=ledger,
        settings=run_settings(pace=pace),
        manifest=manifest.path,
        handle_signals=False,
    )
    return await run_job(spec, factory(sim))


def ledger_lines(ledger: Path) -> dict[str, list[dict[str, Any]]]:
    lines: dict[str, list[dict[str, Any]]] = {}
    for record in iter_records(ledger):
        lines.setdefault(record["event"], []).append(record)
    return lines


def blocking_records(sim: Simulator, pairs: Iterator[Pair]) -> dict[Pair, str]:
    """Pairs that already have a replica (or one under way): the service will refuse them."""
    now = sim.state.now()
    found = {}
    for pair in pairs:
        record = sim.state.latest_record(*pair)
        if record is not None and record.blocks_duplicate(now):
            found[pair] = record.id
    return found


def check_rejections(lines: dict[str, list[dict[str, Any]]], manifest: Manifest) -> None:
    rejected = [r for r in lines["result"] if r["status"] == "rejected"]
    assert {r["manifest_line"] for r in rejected} == manifest.rejected_lines
    assert len(rejected) == len(manifest.rejected_lines)
    assert all(r["error_msg"] and r["manifest"] == str(manifest.path) for r in rejected)


def sent_results(lines: dict[str, list[dict[str, Any]]]) -> dict[Pair, dict[str, Any]]:
    results: dict[Pair, dict[str, Any]] = {}
    for record in lines["result"]:
        if record["status"] == "rejected":
            continue
        pair = (record["checkpoint_item_id"], record["destination_region"])
        assert pair not in results, f"two results for {pair}"
        results[pair] = record
    return results


@pytest.mark.parametrize("paced", [False, True], ids=["request-clock", "paced"])
async def test_bulk_run_under_faults(
    make_simulator: MakeSimulator, tmp_path: Path, paced: bool
) -> None:
    """``request-clock``: throttling that no pace can avoid (a clock that moves with the
    requests), the rate controller off. ``paced``: a real token bucket in real time and the
    rate controller learning it, among the same 503s and cut connections."""
    if paced:
        clock: Callable[[], float] = time.monotonic
        faults = FAULTS | PACED_THROTTLE
    else:
        clock = request_clock = RequestClock()
        faults = FAULTS
    sim = make_simulator(items=800, regions=(SOURCE_REGION,), seed=11, monotonic=clock, **faults)
    if not paced:
        request_clock.sim = sim
    async with sim:
        manifest = build_manifest(sim, tmp_path / "manifest.csv")
        existing = blocking_records(sim, iter(manifest.valid))
        assert 50 < len(existing) < len(manifest.valid) // 4  # the estate has some history

        sim_start = sim.state.now()
        result = await run(sim, manifest, tmp_path / "ledger.jsonl", pace=paced)

        lines = ledger_lines(tmp_path / "ledger.jsonl")
        results = sent_results(lines)
        counters = sim.counters

        # Every valid pair ended well, with the simulator's own record id.
        assert set(results) == set(manifest.valid)
        for pair, record in results.items():
            assert record["status"] in {"replicated", "already_replicated"}, record
            latest = sim.state.latest_record(*pair)
            assert latest is not None
            assert record["replication_record_id"] == latest.id
            assert record["manifest_line"] == manifest.valid[pair]
            if pair in existing:
                assert record["replication_record_id"] == existing[pair]
            else:
                # Made by this run, once; an applied-then-dropped request was reconciled and
                # never re-sent (a re-send would have been refused as a duplicate).
                assert record["status"] == "replicated"
                assert counters.replications[pair] == 1
                assert counters.duplicates[pair] == 0
        assert max(counters.replications.values()) == 1
        assert set(counters.replications) == set(manifest.valid) - set(existing)

        # Invalid rows and every row of a conflicting pair: rejected, with their lines.
        check_rejections(lines, manifest)

        # run_finished agrees with the ledger and with the simulator.
        (finished,) = lines["run_finished"]
        statuses = Counter(r["status"] for r in results.values())
        assert finished["counts"] == dict(statuses)
        already = {p for p, r in results.items() if r["status"] == "already_replicated"}
        # A record there before the run is already_replicated, whether the service refused
        # the request as a duplicate or a reconcile (a request dropped, then asked) found it,
        # unless it is younger than the clock-skew margin (a copy seeded as under way).
        assert set(counters.duplicates) <= already <= set(existing)
        for pair in set(existing) - already:
            found = sim.state.record(existing[pair])
            assert found is not None
            assert found.created_at > sim_start - RunSettings().retry.reconcile_skew - 2
        young = len(set(existing) - already)
        assert statuses["replicated"] == len(counters.replications) + young
        assert finished["rejected"] == len(manifest.rejected_lines)
        assert finished["duplicates"] == DUPLICATES
        assert finished["conflicts"] == manifest.conflicted_pairs
        assert finished["exit_code"] == ExitCode.FAILED == result.exit_code  # rejected rows
        assert finished["requests"] == result.stats.requests
        assert finished["retries"] == result.stats.retries > 0
        # Every replicate request that reached the simulator has its durable attempt line.
        replicate_requests = sum(
            n for (route, _), n in counters.requests.items() if route == REPLICATE
        )
        assert len(lines["attempt"]) == replicate_requests

        # The faults really happened.
        for kind in ("p503", "drop", "apply_drop", "throttled"):
            assert counters.faults[kind] > 0, (kind, counters.faults)
        if paced:  # ... and the pace was learned: few requests throttled
            (pace,) = finished["pace"].values()
            assert pace["limit"] is not None, finished["pace"]
            assert counters.faults["throttled"] < 0.05 * replicate_requests, counters.faults


async def test_without_faults_each_pair_is_requested_once(
    make_simulator: MakeSimulator, tmp_path: Path
) -> None:
    async with make_simulator(items=800, regions=(SOURCE_REGION,), seed=11) as sim:
        manifest = build_manifest(sim, tmp_path / "manifest.csv")
        existing = blocking_records(sim, iter(manifest.valid))

        result = await run(sim, manifest, tmp_path / "ledger.jsonl")

        counters = sim.counters
        for pair in manifest.valid:
            assert counters.replications[pair] + counters.duplicates[pair] == 1, pair
        assert sum(n for (route, _), n in counters.requests.items() if route == REPLICATE) == len(
            manifest.valid
        )
        lines = ledger_lines(tmp_path / "ledger.jsonl")
        results = sent_results(lines)
        assert {p for p, r in results.items() if r["status"] == "already_replicated"} == set(
            existing
        )
        assert all(r["attempts"] == 1 for r in results.values())
        check_rejections(lines, manifest)
        assert result.stats.retries == 0
        assert result.exit_code == ExitCode.FAILED
