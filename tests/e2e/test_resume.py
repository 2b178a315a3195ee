"""Resume: a second run over the same manifest and ledger finishes the job and sends nothing
twice; ``resume --ledger`` does it from the ledger alone; ``--retry-failed`` re-sends failed
pairs; a pair whose outcome is unknown is reconciled with the service before any resend."""

from __future__ import annotations

import csv
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from structlog.testing import capture_logs

from orchestrator.engine.pool_types import Replicator
from orchestrator.exitcodes import ExitCode
from orchestrator.ledger.file import LedgerWriter
from orchestrator.ledger.history import History
from orchestrator.ledger.recorder import LedgerRecorder
from orchestrator.ledger.run_lines import RunStarted
from orchestrator.ledger.snapshot import snapshot_path
from orchestrator.models import ReplicationTask
from orchestrator.simulator import Simulator
from orchestrator.simulator.csbs import GET_ITEM, REPLICATE
from tests.conftest import MakeSimulator
from tests.helpers.env import subprocess_env
from tests.helpers.runkit import (
    SimProcess,
    client_factory,
    estate_manifest,
    final_results,
    ledger_lines,
    results_by_pair,
    run_cli,
    run_in_process,
    until,
)

pytestmark = pytest.mark.anyio


def _replicate_posts(sim: Simulator) -> int:
    return sum(n for (route, _), n in sim.counters.requests.items() if route == REPLICATE)


def _add_missing_item_row(manifest: Path, sim: Simulator) -> tuple[str, str, str]:
    """A row for an item the service does not have: a permanent 404 (``failed``)."""
    project = sim.state.projects[0]
    region = sim.state.capabilities()[project.region][0]
    item = str(uuid.uuid4())
    with manifest.open("a", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerow(
            [item, project.id, project.region, region, sim.state.destination_projects[region]]
        )
    return (project.id, item, region)


async def test_a_second_run_skips_what_is_done(
    make_simulator: MakeSimulator, tmp_path: Path
) -> None:
    manifest, ledger = tmp_path / "m.csv", tmp_path / "ledger.jsonl"
    async with make_simulator(items=60) as sim:
        pairs = estate_manifest(sim, manifest)
        first = await run_in_process(sim, manifest, ledger)
        assert first.exit_code == ExitCode.OK
        sent = _replicate_posts(sim)

        again = await run_in_process(sim, manifest, ledger)

        assert again.exit_code == ExitCode.OK
        assert again.stats.requests == 0
        assert again.plan.totals.already_done == pairs
        assert _replicate_posts(sim) == sent
    assert all(len(lines) == 1 for lines in results_by_pair(ledger).values())


async def test_a_run_saves_its_fold_and_the_next_run_starts_from_it(
    make_simulator: MakeSimulator, tmp_path: Path
) -> None:
    manifest, ledger = tmp_path / "m.csv", tmp_path / "ledger.jsonl"
    async with make_simulator(items=40) as sim:
        pairs = estate_manifest(sim, manifest)
        await run_in_process(sim, manifest, ledger, snapshot_after_bytes=0)
        covered = ledger.stat().st_size
        assert History.load(ledger, record_ids=False).snapshot_end == covered
        _add_missing_item_row(manifest, sim)
        sent = _replicate_posts(sim)

        with capture_logs() as logs:
            again = await run_in_process(sim, manifest, ledger, snapshot_after_bytes=0)

        assert _replicate_posts(sim) == sent + 1  # only the new row
    assert again.plan.totals.already_done == pairs
    (loaded,) = [e for e in logs if e["event"] == "history.loaded"]
    assert (loaded["from_snapshot"], loaded["pairs"]) == (covered, pairs)
    assert History.load(ledger, record_ids=False).snapshot_end == ledger.stat().st_size


async def test_a_snapshot_that_cannot_be_saved_is_only_a_warning(
    make_simulator: MakeSimulator, tmp_path: Path
) -> None:
    """The snapshot is a cache: the run still ends well, its ledger whole, and the next run
    folds the ledger instead."""
    manifest, ledger = tmp_path / "m.csv", tmp_path / "ledger.jsonl"
    await anyio.Path(snapshot_path(ledger)).mkdir()  # a directory where the file goes
    async with make_simulator(items=20) as sim:
        pairs = estate_manifest(sim, manifest)
        with capture_logs() as logs:
            first = await run_in_process(sim, manifest, ledger, snapshot_after_bytes=0)
        assert first.exit_code == ExitCode.OK
        (warning,) = [e for e in logs if e["event"] == "history.snapshot_not_saved"]
        assert warning["log_level"] == "warning"
        assert warning["ledger"] == str(ledger)
        assert len(final_results(ledger)) == pairs

        again = await run_in_process(sim, manifest, ledger)
    assert again.plan.totals.already_done == pairs
    assert again.stats.requests == 0


class _KeepsASnapshot:
    """The real client, except that its 20th request first waits for a snapshot of the run so
    far and keeps a copy: the snapshot a run killed at that moment would leave behind."""

    def __init__(self, client: Replicator, snapshot: Path) -> None:
        self._client = client
        self._snapshot = snapshot
        self.kept = b""
        self._calls = 0

    async def replicate(self, task: ReplicationTask) -> str:
        self._calls += 1
        if self._calls == 20:
            await until(self._snapshot.exists)
            self.kept = await anyio.Path(self._snapshot).read_bytes()
        return await self._client.replicate(task)

    async def find_replication(self, task: ReplicationTask) -> str | None:
        return await self._client.find_replication(task)


async def test_a_running_job_saves_snapshots_that_a_killed_run_would_leave(
    make_simulator: MakeSimulator, tmp_path: Path
) -> None:
    manifest, ledger, snapshot = (tmp_path / n for n in ("m.csv", "l.jsonl", "l.jsonl.snapshot"))
    async with make_simulator(items=40) as sim:
        estate_manifest(sim, manifest)
        real = client_factory(sim)
        keeper: list[_KeepsASnapshot] = []

        @asynccontextmanager
        async def factory() -> AsyncIterator[Replicator]:
            async with real() as client:
                keeper.append(_KeepsASnapshot(client, snapshot))
                yield keeper[0]

        await run_in_process(
            sim, manifest, ledger, factory=factory, snapshot_after_bytes=1, snapshot_check_s=0.001
        )

    # Put the mid-run snapshot back: the ledger still starts with the bytes it describes.
    snapshot.write_bytes(keeper[0].kept)
    history = History.load(ledger, record_ids=False)
    assert 0 < history.snapshot_end < ledger.stat().st_size
    snapshot.unlink()
    whole = History.load(ledger, record_ids=False)
    assert history.counts() == whole.counts()
    assert history.unknown_outcomes() == whole.unknown_outcomes() == 0
    assert (history.runs, history.lines) == (whole.runs, whole.lines)


async def test_a_small_ledger_gets_no_snapshot_and_a_bad_one_is_read_past(
    make_simulator: MakeSimulator, tmp_path: Path
) -> None:
    manifest, ledger, snapshot = (
        tmp_path / name for name in ("m.csv", "l.jsonl", "l.jsonl.snapshot")
    )
    assert snapshot_path(ledger) == str(snapshot)
    async with make_simulator(items=20) as sim:
        pairs = estate_manifest(sim, manifest)
        await run_in_process(sim, manifest, ledger)  # the default: 64 MiB past the last one
        assert not snapshot.exists()
        snapshot.write_bytes(b"not a snapshot")

        again = await run_in_process(sim, manifest, ledger)

    assert again.stats.requests == 0
    assert again.plan.totals.already_done == pairs
    assert snapshot.read_bytes() == b"not a snapshot"


async def test_gave_up_pairs_are_retried_failed_ones_only_on_request(
    make_simulator: MakeSimulator, tmp_path: Path
) -> None:
    manifest, ledger = tmp_path / "m.csv", tmp_path / "ledger.jsonl"
    async with make_simulator(items=40, p503=1.0) as sim:
        pairs = estate_manifest(sim, manifest) + 1
        missing = _add_missing_item_row(manifest, sim)

        storm = await run_in_process(sim, manifest, ledger, max_attempts=2)
        assert storm.exit_code == ExitCode.GAVE_UP
        assert storm.stats.counts["gave_up"] == pairs

        sim.update_faults(p503=0.0)
        second = await run_in_process(sim, manifest, ledger)
        assert second.exit_code == ExitCode.FAILED
        final = final_results(ledger)
        assert final[missing]["status"] == "failed"
        assert final[missing]["http_status"] == 404
        assert all(f["status"] != "gave_up" for f in final.values())
        assert len(final) == pairs

        posts = _replicate_posts(sim)
        third = await run_in_process(sim, manifest, ledger)
        assert third.stats.requests == 0  # the failed pair stays failed
        assert third.plan.totals.skipped_failed == 1
        assert _replicate_posts(sim) == posts

        fourth = await run_in_process(sim, manifest, ledger, retry_failed=True)
        assert fourth.plan.totals.retry_failed == 1
        assert _replicate_posts(sim) == posts + 1  # exactly the failed pair, once
        assert fourth.stats.counts["failed"] == 1
    assert len(results_by_pair(ledger)[missing]) == 3  # failed in runs 2 and 4


async def test_unknown_outcomes_are_reconciled_before_anything_is_resent(
    make_simulator: MakeSimulator, tmp_path: Path
) -> None:
    """A crash left two attempts without results: one the service applied, one it never
    saw. Resume asks the service about both, records the applied one's record id without
    sending it again, and sends the other exactly once."""
    manifest, ledger = tmp_path / "m.csv", tmp_path / "ledger.jsonl"
    async with make_simulator(items=30) as sim:
        estate_manifest(sim, manifest)
        with manifest.open() as handle:
            rows = list(csv.DictReader(handle))
        applied, lost = (
            ReplicationTask(
                r["checkpoint_item_id"],
                r["project_id"],
                r["destination_region"],
                r["destination_project_id"],
                r["source_region"],
            )
            for r in rows[:2]
        )
        record = sim.state.replicate(
            applied.project_id,
            applied.checkpoint_item_id,
            applied.destination_region,
            applied.destination_project_id,
            limits=sim.faults,
        )
        async with LedgerWriter(ledger) as writer:
            crashed = LedgerRecorder(writer, "crashed-run")
            await crashed.run_started(
                RunStarted(
                    manifest=str(manifest),
                    source="manifest",
                    settings={},
                    version="t",
                    retry_failed=False,
                )
            )
            await crashed.attempt(applied, 1)
            await crashed.attempt(lost, 1)

        result = await run_in_process(sim, manifest, ledger)

        assert result.exit_code == ExitCode.OK
        assert result.plan.totals.unknown_outcome == 2
        assert (
            sim.counters.replications[(applied.checkpoint_item_id, applied.destination_region)] == 0
        )
        assert (
            sim.counters.duplicates[(applied.checkpoint_item_id, applied.destination_region)] == 0
        )
        assert sim.counters.replications[(lost.checkpoint_item_id, lost.destination_region)] == 1
        assert sim.counters.requests_for(GET_ITEM, 200) == 2  # one reconcile per unknown pair
        final = final_results(ledger)
        assert final[applied.key]["status"] == "replicated"
        assert final[applied.key]["replication_record_id"] == record.id
        lost_record = sim.state.latest_record(lost.checkpoint_item_id, lost.destination_region)
        assert lost_record is not None
        assert final[lost.key]["replication_record_id"] == lost_record.id


async def test_already_replicated_results_carry_the_existing_record_id(
    make_simulator: MakeSimulator, tmp_path: Path
) -> None:
    manifest, ledger = tmp_path / "m.csv", tmp_path / "ledger.jsonl"
    async with make_simulator(items=120) as sim:
        estate_manifest(sim, manifest, destinations=3)  # every capable region of every item
        result = await run_in_process(sim, manifest, ledger)
        assert result.exit_code == ExitCode.OK
        already = [f for f in final_results(ledger).values() if f["status"] == "already_replicated"]
        assert already, "the seeded estate has replicas made before the run"
        for line in already:
            record = sim.state.latest_record(line["checkpoint_item_id"], line["destination_region"])
            assert record is not None
            assert line["replication_record_id"] == record.id
        assert sim.counters.replications.total() + len(already) == len(final_results(ledger))


def test_resume_from_the_ledger_alone(tmp_path: Path) -> None:
    """``resume --ledger`` finds the manifest and the settings (endpoint included) in the
    ledger's run_started line; failed pairs stay failed unless --retry-failed."""
    manifest, ledger = tmp_path / "m.csv", tmp_path / "ledger.jsonl"
    with SimProcess.start("--items", "40", "--p503", "1.0") as sim:
        write = ["simulate", "--items", "40", "--write-manifest", str(manifest)]
        run_cli(write, subprocess_env(sim))
        project = sim.info["projects"][0]
        region = sim.info["capabilities"][project["region"]][0]
        missing = str(uuid.uuid4())
        with manifest.open("a", newline="") as handle:
            csv.writer(handle, lineterminator="\n").writerow(
                [
                    missing,
                    project["id"],
                    project["region"],
                    region,
                    sim.info["destination_projects"][region],
                ]
            )
        pairs = sum(1 for _ in manifest.open()) - 1
        env = subprocess_env(sim)
        args = ["--ledger", str(ledger), "--log-format", "json", "--no-progress"]
        first = run_cli(
            [
                "run",
                "--manifest",
                str(manifest),
                "--endpoint",
                sim.base_url,
                "--max-attempts",
                "1",
                *args,
            ],
            env,
        )
        assert first.returncode == ExitCode.GAVE_UP, first.stderr

        sim.set_faults(p503=0.0)
        resumed = run_cli(["resume", *args], env)

        assert resumed.returncode == ExitCode.FAILED, resumed.stderr
        started = [line for line in ledger_lines(ledger) if line["event"] == "run_started"]
        assert started[-1]["manifest"] == str(manifest.resolve())
        assert started[-1]["settings"]["endpoint"] == sim.base_url
        final = final_results(ledger)
        assert len(final) == pairs
        live = sim.live_records()
        for (_, item, region_), line in final.items():
            if item == missing:
                assert line["status"] == "failed"
                continue
            assert line["status"] in {"replicated", "already_replicated"}
            assert line["replication_record_id"] == live[(item, region_)]

        posts = sum(sim.replicate_requests().values())
        again = run_cli(["resume", *args], env)
        assert again.returncode == ExitCode.OK, again.stderr
        assert "0 requests" in again.stdout
        retried = run_cli(["resume", "--retry-failed", *args], env)
        assert retried.returncode == ExitCode.FAILED, retried.stderr
        assert sum(sim.replicate_requests().values()) == posts + 1


def test_resume_needs_a_ledger_with_a_run(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin"}
    missing = run_cli(["resume", "--ledger", str(tmp_path / "none.jsonl")], env)
    assert missing.returncode == ExitCode.USAGE
    assert "no such ledger" in missing.stderr
    assert "Traceback" not in missing.stderr


async def test_giving_up_after_a_request_that_may_have_applied_leaves_it_unknown(
    make_simulator: MakeSimulator, tmp_path: Path
) -> None:
    """The service applied each request and then cut the connection; the run gave up before
    asking. The next run must ask before it sends: a resend would be refused (or, on a
    service without that rule, copied twice) instead of recording the record that exists."""
    manifest, ledger = tmp_path / "m.csv", tmp_path / "ledger.jsonl"
    async with make_simulator(items=20, p_apply_drop=1.0) as sim:
        pairs = estate_manifest(sim, manifest)
        cut = await run_in_process(sim, manifest, ledger, max_attempts=1)
        assert cut.exit_code == ExitCode.GAVE_UP
        gave_up = [line for line in ledger_lines(ledger) if line.get("status") == "gave_up"]
        assert len(gave_up) == pairs
        assert all(line["outcome_unknown"] is True for line in gave_up)
        applied = sim.counters.replications.total()
        assert applied > 0

        sim.update_faults(p_apply_drop=0.0)
        again = await run_in_process(sim, manifest, ledger)

        assert again.exit_code == ExitCode.OK
        assert again.plan.totals.unknown_outcome == pairs
        assert sim.counters.duplicates.total() == 0  # nothing applied was sent again
        assert sim.counters.replications.total() == applied  # each pair was created once
        for (_, item, region), line in final_results(ledger).items():
            record = sim.state.latest_record(item, region)
            assert record is not None
            assert line["replication_record_id"] == record.id
