"""``--state-file``: each region's adaptive limit outlives the run, and the next run starts
from it. Whole runs against the simulator; the file's reading and writing on their own."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from orchestrator.engine.job_spec import JobResult
from orchestrator.engine.overload import load_learned_limits, save_learned_limits
from orchestrator.exitcodes import ExitCode
from orchestrator.simulator import Simulator
from orchestrator.simulator.sample import write_estate_manifest
from tests.conftest import MakeSimulator
from tests.helpers.runkit import run_in_process

SOURCE_REGION = "cn-north-1"
#: Ten pairs, two attempts each: 20 overload answers, under the breaker's 25 in a row (which
#: would pause the region for a real second).
PAIRS = 10
CEILING = 8


async def run(sim: Simulator, manifest: Path, ledger: Path, state: Path) -> JobResult:
    return await run_in_process(
        sim,
        manifest,
        ledger,
        state_file=str(state),
        concurrency=CEILING,
        per_region=CEILING,
        per_region_floor=1,
        max_attempts=2,
    )


@pytest.mark.anyio
async def test_a_run_keeps_what_it_learned_and_the_next_one_starts_there(
    make_simulator: MakeSimulator, tmp_path: Path
) -> None:
    state = tmp_path / "limits.json"
    state.write_bytes(orjson.dumps({"ap-southeast-1": 7}))  # another region, another night
    manifest = tmp_path / "manifest.csv"
    async with make_simulator(items=40, regions=(SOURCE_REGION,), p503=1.0) as sim:
        assert write_estate_manifest(sim.state, manifest, limit=PAIRS) == PAIRS
        region = sim.state.capabilities()[SOURCE_REGION][0]

        # Every answer is a 503: the limit falls x0.7 once per window, 8 -> 5 -> 3 -> 2 -> 1.
        first = await run(sim, manifest, tmp_path / "one.jsonl", state)
        assert first.exit_code == ExitCode.GAVE_UP
        assert [limit for _, limit in first.stats.limits[region]] == [8, 5, 3, 2, 1]
        assert orjson.loads(state.read_bytes()) == {"ap-southeast-1": 7, region: 1}

        # The service recovers: the next run starts at 1 and climbs (+1/limit per success).
        sim.update_faults(p503=0.0)
        second = await run(sim, manifest, tmp_path / "two.jsonl", state)
        assert second.exit_code == ExitCode.OK
        history = [limit for _, limit in second.stats.limits[region]]
        assert history[0] == 1
        assert history == sorted(history)
        assert 1 < history[-1] <= CEILING
        assert orjson.loads(state.read_bytes()) == {"ap-southeast-1": 7, region: history[-1]}


def test_an_unreadable_state_file_means_no_learned_limits(tmp_path: Path) -> None:
    state = tmp_path / "limits.json"
    assert load_learned_limits(str(state)) == {}  # none yet
    assert load_learned_limits(None) == {}
    for text in (b"{not json", b"[1, 2]", b""):
        state.write_bytes(text)
        assert load_learned_limits(str(state)) == {}, text
    # Only positive whole numbers are limits; the rest of the file is ignored.
    state.write_bytes(orjson.dumps({"a": 3, "b": 0, "c": -1, "d": 2.5, "e": "4", "f": True}))
    assert load_learned_limits(str(state)) == {"a": 3}


def test_a_state_file_that_cannot_be_written_does_not_fail_the_run(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    save_learned_limits(str(blocker / "limits.json"), {"cn-east-2": [(0.0, 4)]})  # no raise
    assert not (tmp_path / "limits.json").exists()
    save_learned_limits(None, {"cn-east-2": [(0.0, 4)]})  # no state file: nothing to do
    target = tmp_path / "state" / "limits.json"
    save_learned_limits(str(target), {})  # nothing learned: the file is not created
    assert not target.exists()
    save_learned_limits(str(target), {"cn-east-2": [(0.0, 8), (1.0, 4)]})  # makes its directory
    assert orjson.loads(target.read_bytes()) == {"cn-east-2": 4}
