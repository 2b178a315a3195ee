"""Overload control over a whole run: a 503 storm, a region that is down, the failure
threshold. The simulator runs in this process (its faults change while the run goes on);
backoff is milliseconds (runkit.FAST) so nothing waits for long."""

from __future__ import annotations

import csv
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from orchestrator.engine.pool_types import Replicator
from orchestrator.errors import TransientApiError
from orchestrator.exitcodes import ExitCode
from orchestrator.models import ReplicationTask
from orchestrator.simulator import Simulator
from orchestrator.simulator.csbs import REPLICATE
from tests.conftest import MakeSimulator
from tests.helpers.runkit import (
    client_factory,
    estate_manifest,
    final_results,
    run_in_process,
    until,
)

pytestmark = pytest.mark.anyio

P_STORM = 0.6


def _replicate_posts(sim: Simulator) -> int:
    return sum(n for (route, _), n in sim.counters.requests.items() if route == REPLICATE)


def _final_answers(sim: Simulator) -> int:
    """Replicate requests that settled their pair: accepted (200) or refused as a duplicate."""
    return sim.counters.requests_for(REPLICATE, 200) + sim.counters.duplicates.total()


async def test_a_503_storm_backs_off_recovers_and_wastes_no_requests(
    make_simulator: MakeSimulator, tmp_path: Path
) -> None:
    """60 % of replicate requests answer 503 until 100 pairs have settled, then none do.

    The ideal client sends each pair until it succeeds and nothing more. A request during
    the storm settles its pair with probability 1 - p, so the ideal total is
    ``S / (1 - p) + (N - S)``: ``S`` pairs settled during the storm, ``N - S`` after it at
    one request each. The run (plus one resume, for pairs the retry budget gave up on while
    the storm raged) must stay within 1.5x that, and the per-region concurrency limits must
    drop during the storm and climb again after it.
    """
    manifest, ledger = tmp_path / "m.csv", tmp_path / "ledger.jsonl"
    storm: dict[str, float] = {}
    async with make_simulator(items=300, p503=P_STORM, seed=3) as sim:
        pairs = estate_manifest(sim, manifest, destinations=3)

        async def end_the_storm(after: int) -> None:
            await until(lambda: _final_answers(sim) >= after)
            storm.update(settled=_final_answers(sim), ended_at=anyio.current_time())
            sim.update_faults(p503=0.0)

        async with anyio.create_task_group() as tg:
            tg.start_soon(end_the_storm, 100)
            result = await run_in_process(sim, manifest, ledger)
        assert result.exit_code in {ExitCode.OK, ExitCode.GAVE_UP}
        if result.exit_code == ExitCode.GAVE_UP:  # the budget stopped some retries: resume
            assert (await run_in_process(sim, manifest, ledger)).exit_code == ExitCode.OK

        final = final_results(ledger)
        assert len(final) == pairs
        assert all(f["status"] in {"replicated", "already_replicated"} for f in final.values())
        assert max(sim.counters.replications.values()) == 1  # no replica made twice
        settled = storm["settled"]
        ideal = settled / (1 - P_STORM) + (pairs - settled)
        assert _replicate_posts(sim) <= 1.5 * ideal, (_replicate_posts(sim), ideal)

    ended = storm["ended_at"]
    backed_off = recovered = 0
    for history in result.stats.limits.values():
        during = [limit for at, limit in history if at <= ended]
        after = [limit for at, limit in history if at > ended]
        backed_off += min(during) < during[0]
        recovered += bool(after) and max(after) > min(during)
    assert backed_off == len(result.stats.limits), result.stats.limits
    assert recovered >= 1, result.stats.limits


class _RegionDown:
    """The real client, except that one destination region answers only 503."""

    def __init__(self, client: Replicator, region: str) -> None:
        self._client = client
        self._region = region

    async def replicate(self, task: ReplicationTask) -> str:
        if task.destination_region == self._region:
            raise TransientApiError("HTTP 503 (region down)", http_status=503)
        return await self._client.replicate(task)

    async def find_replication(self, task: ReplicationTask) -> str | None:
        return await self._client.find_replication(task)


def _region_down(
    sim: Simulator, region: str
) -> Callable[[], AbstractAsyncContextManager[Replicator]]:
    real = client_factory(sim)

    @asynccontextmanager
    async def factory() -> AsyncIterator[Replicator]:
        async with real() as client:
            yield _RegionDown(client, region)

    return factory


async def test_a_region_that_is_down_trips_its_breaker_and_the_others_carry_on(
    make_simulator: MakeSimulator, tmp_path: Path
) -> None:
    manifest, ledger = tmp_path / "m.csv", tmp_path / "ledger.jsonl"
    async with make_simulator(items=200) as sim:
        estate_manifest(sim, manifest, destinations=3)
        down = "cn-south-1"  # a destination of every source region
        result = await run_in_process(
            sim, manifest, ledger, factory=_region_down(sim, down), max_attempts=3, retry_time=0.5
        )

    assert result.exit_code == ExitCode.GAVE_UP
    final = final_results(ledger)
    for (_, _, region), line in final.items():
        expected = {"gave_up"} if region == down else {"replicated", "already_replicated"}
        assert line["status"] in expected, (region, line["status"])
    assert result.stats.breaker_trips[down] >= 1
    assert all(n == 0 for region, n in result.stats.breaker_trips.items() if region != down)
    assert result.stats.limits[down][-1][1] < result.stats.limits[down][0][1]


def _add_missing_items(manifest: Path, sim: Simulator, count: int) -> None:
    project = sim.state.projects[0]
    region = sim.state.capabilities()[project.region][0]
    with manifest.open("a", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        for _ in range(count):
            writer.writerow(
                [
                    str(uuid.uuid4()),
                    project.id,
                    project.region,
                    region,
                    sim.state.destination_projects[region],
                ]
            )


async def test_too_many_permanent_failures_trip_the_threshold(
    make_simulator: MakeSimulator, tmp_path: Path
) -> None:
    manifest, ledger = tmp_path / "m.csv", tmp_path / "ledger.jsonl"
    async with make_simulator(items=40) as sim:
        manifest.write_text(
            "checkpoint_item_id,project_id,source_region,destination_region,"
            "destination_project_id\n"
        )
        _add_missing_items(manifest, sim, 60)  # every one a 404
        result = await run_in_process(
            sim, manifest, ledger, concurrency=2, failure_min_results=10, failure_percent=50.0
        )
    assert result.exit_code == ExitCode.THRESHOLD
    assert result.stats.stop_reason == "threshold"
    assert 10 <= result.stats.finished < 60  # stopped early, the rest left for later


async def test_overload_answers_never_count_towards_the_threshold(
    make_simulator: MakeSimulator, tmp_path: Path
) -> None:
    manifest, ledger = tmp_path / "m.csv", tmp_path / "ledger.jsonl"
    settings: dict[str, Any] = {"failure_min_results": 10, "max_attempts": 2}
    async with make_simulator(items=60, p503=0.5, throttle_rate=20.0, throttle_burst=5) as sim:
        pairs = estate_manifest(sim, manifest)
        result = await run_in_process(sim, manifest, ledger, **settings)
        statuses = {line for (_, line) in sim.counters.requests if _ == REPLICATE}
    assert {"429", "503"} <= statuses
    assert result.exit_code in {ExitCode.OK, ExitCode.GAVE_UP}
    assert result.stats.stop_reason is None
    assert result.stats.finished == pairs
