"""A 400 the error table does not know: the service's own records decide whether the pair
is ``already_replicated`` before it is recorded ``failed`` (issue 15)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from orchestrator.models import ResultStatus
from orchestrator.simulator import Simulator
from orchestrator.simulator.csbs import GET_ITEM, LIST_RECORDS
from orchestrator.simulator.sample import MANIFEST_COLUMNS
from tests.conftest import MakeSimulator
from tests.engine.test_pool import FakeReplicator, http_error, make_task, run_pool
from tests.helpers.runkit import final_results, fresh_items, run_in_process, task_for

pytestmark = pytest.mark.anyio

UNKNOWN_CODE = "CSBS.4242"  # a code no table knows, with wordings no pattern matches


def _manifest(sim: Simulator, path: Path, count: int) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, MANIFEST_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for item in fresh_items(sim, count):
            task = task_for(sim, item)
            writer.writerow(
                {
                    "checkpoint_item_id": task.checkpoint_item_id,
                    "project_id": task.project_id,
                    "source_region": task.source_region,
                    "destination_region": task.destination_region,
                    "destination_project_id": task.destination_project_id,
                }
            )
    return path


def _lookups(sim: Simulator) -> int:
    return sim.counters.requests_for(GET_ITEM, 200) + sim.counters.requests_for(LIST_RECORDS, 200)


@pytest.mark.parametrize(
    "wording",
    [
        "A replica already exists in the destination region",
        "Replication to the destination region is in progress",
    ],
)
async def test_an_unknown_400_with_a_live_record_is_already_replicated(
    make_simulator: MakeSimulator, tmp_path: Path, wording: str
) -> None:
    async with make_simulator(
        items=40, duplicate_code=UNKNOWN_CODE, duplicate_msg=wording, copy_duration_s=3600
    ) as sim:
        manifest = _manifest(sim, tmp_path / "m.csv", 5)
        first = tmp_path / "first.jsonl"
        await run_in_process(sim, manifest, first)
        # The common path pays nothing: five 200s, not one lookup.
        assert _lookups(sim) == 0
        sent = {k: r["replication_record_id"] for k, r in final_results(first).items()}
        assert {r["status"] for r in final_results(first).values()} == {"replicated"}

        second = tmp_path / "second.jsonl"  # a ledger that knows nothing of the first run
        await run_in_process(sim, manifest, second)
        results = final_results(second)
    assert {r["status"] for r in results.values()} == {"already_replicated"}
    assert {k: r["replication_record_id"] for k, r in results.items()} == sent
    assert {r["error_code"] for r in results.values()} == {UNKNOWN_CODE}


@pytest.mark.parametrize(
    ("code", "lookups", "status"),
    [
        ("CSBS.4243", 1, ResultStatus.FAILED),  # unknown: asked, nothing live, failed
        ("CSBS.4000", 0, ResultStatus.FAILED),  # documented (not available): not asked
        ("CSBS.0001", 0, ResultStatus.FAILED),  # documented (policy quota): not asked
    ],
)
async def test_only_an_unknown_400_asks_the_service(
    code: str, lookups: int, status: ResultStatus
) -> None:
    task = make_task(0)
    fake = FakeReplicator({task.checkpoint_item_id: [http_error(400, code, "refused")]})
    _, recorder, _ = await run_pool(fake, [task])
    assert fake.lookups[task.key] == lookups
    assert recorder.results[task.key].status is status
    assert recorder.results[task.key].error_code == code
