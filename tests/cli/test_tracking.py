"""``track``: copies followed to their end on simulated time, ``copy_status`` lines in the
ledger, the exit codes, and ``resume --retry-failed`` sending failed copies again."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from time import monotonic
from typing import cast

import orjson
import pytest
from structlog.testing import capture_logs

from orchestrator.cli.main import main
from orchestrator.engine.copies import PendingCopy, pending_copies
from orchestrator.engine.pace import PaceSettings
from orchestrator.engine.paced_service import Pacing
from orchestrator.engine.plan import Plan
from orchestrator.engine.track import TrackResult, TrackSettings, track_copies, track_ledger
from orchestrator.exitcodes import ExitCode
from orchestrator.ledger.file import LedgerWriter, iter_records
from orchestrator.ledger.history import History
from orchestrator.ledger.recorder import LedgerRecorder
from orchestrator.service.aksk import AkSkSigner
from orchestrator.service.auth import Secret
from orchestrator.service.client import CsbsClient
from orchestrator.service.records import RecordReader
from orchestrator.service.settings import ClientSettings
from orchestrator.simulator import Simulator
from orchestrator.simulator.app import UNKNOWN
from orchestrator.simulator.csbs import GET_ITEM
from tests.conftest import MakeSimulator
from tests.helpers.env import use_sim_credentials
from tests.helpers.runkit import estate_manifest, final_results, run_in_process
from tests.helpers.simthread import simulator_thread

pytestmark = pytest.mark.anyio


def _factory(sim: Simulator) -> Callable[[], CsbsClient]:
    signer = AkSkSigner(sim.config.ak, Secret(sim.config.sk))
    return lambda: CsbsClient(ClientSettings(endpoint=sim.base_url), signer)


class SimTime:
    """The tracker's sleep and clock, on the simulator's time: nothing really waits."""

    def __init__(self, sim: Simulator | None) -> None:
        self.sim = sim
        self.now = 0.0
        self.sleeps: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if self.sim is not None:
            self.sim.advance(seconds)

    def clock(self) -> float:
        return self.now


async def _track(
    sim: Simulator, ledger: Path, settings: TrackSettings, time: SimTime
) -> TrackResult:
    """``track_ledger`` against ``sim`` on simulated time: nothing really waits."""
    return await track_ledger(ledger, _factory(sim), settings, sleep=time.sleep, clock=time.clock)


def _copy_lines(ledger: Path) -> list[dict[str, object]]:
    return [r for r in iter_records(ledger) if r["event"] == "copy_status"]


async def _replicated(sim: Simulator, tmp_path: Path, rows: int = 6) -> Path:
    manifest = tmp_path / "m.csv"
    estate_manifest(sim, manifest)
    lines = manifest.read_text().splitlines()[: rows + 1]
    manifest.write_text("\n".join(lines) + "\n")
    ledger = tmp_path / "ledger.jsonl"
    result = await run_in_process(sim, manifest, ledger)
    assert result.exit_code == ExitCode.OK
    return ledger


async def test_copies_are_followed_to_success(
    make_simulator: MakeSimulator, tmp_path: Path
) -> None:
    async with make_simulator(items=30, copy_wait_s=5, copy_duration_s=30) as sim:
        ledger = await _replicated(sim, tmp_path)
        pairs = len(pending_copies(ledger))
        assert pairs == 6
        time = SimTime(sim)
        result = await _track(sim, ledger, TrackSettings(interval_s=10, concurrency=4), time)
        again = await track_ledger(ledger, _factory(sim), TrackSettings(), sleep=time.sleep)

    assert (result.success, result.failed, result.running, result.missing) == (pairs, 0, 0, 0)
    assert result.exit_code == ExitCode.OK
    assert result.rounds == 5  # t = 0 waiting, 10 replicating, 20, 30, 40 success
    assert time.sleeps == [10, 10, 10, 10]
    # One line per change, not per poll, in the record's own words, with what they mean.
    lines = _copy_lines(ledger)
    assert Counter((str(line["copy_status"]), str(line["state"])) for line in lines) == {
        ("waiting_replicate", "running"): pairs,
        ("replicating", "running"): pairs,
        ("success", "success"): pairs,
    }
    assert result.lines == len(lines)
    assert all(line["progress"] == 100 for line in lines if line["copy_status"] == "success")
    history = History.load(ledger)
    assert all(history.copy_status(key) == "success" for key in final_results(ledger))
    assert again.tracked == 0
    assert again.exit_code == ExitCode.OK


async def test_without_the_records_endpoint_copies_are_read_from_the_item(
    make_simulator: MakeSimulator, tmp_path: Path
) -> None:
    """``/replication_records`` is unconfirmed on the real service: where it answers 404,
    each copy's status comes from its checkpoint item's own ``replication_records``."""
    async with make_simulator(
        items=30, copy_wait_s=0, copy_duration_s=10, records_endpoint=False
    ) as sim:
        ledger = await _replicated(sim, tmp_path)
        time = SimTime(sim)
        result = await _track(sim, ledger, TrackSettings(interval_s=10, concurrency=4), time)
        refused = sim.counters.requests_for(UNKNOWN, 404)
        asked_items = sim.counters.requests_for(GET_ITEM, 200)
    assert (result.success, result.failed, result.running, result.missing) == (6, 0, 0, 0)
    assert result.exit_code == ExitCode.OK
    assert refused == asked_items == 6 * result.rounds  # every poll: 404, then the item
    assert Counter(str(line["copy_status"]) for line in _copy_lines(ledger))["success"] == 6


async def test_paced_polls_wait_on_the_trackers_own_time(
    make_simulator: MakeSimulator, tmp_path: Path
) -> None:
    """With a pace (here a ceiling of 5 a second), each poll waits for its slot on the
    tracker's sleep and clock: on simulated time, nothing really waits."""
    async with make_simulator(items=30, copy_wait_s=0, copy_duration_s=0) as sim:
        ledger = await _replicated(sim, tmp_path)
        time = SimTime(sim)
        pacing = Pacing(PaceSettings(ceiling=5.0), clock=time.clock, sleep=time.sleep)
        started = monotonic()
        result = await track_ledger(
            ledger,
            _factory(sim),
            TrackSettings(concurrency=4),
            sleep=time.sleep,
            clock=time.clock,
            pacing=pacing,
        )
        waited = monotonic() - started
    assert (result.success, result.rounds) == (6, 1)
    # The preflight, then six polls: one slot every 0.2 s of the tracker's time.
    assert time.now == pytest.approx(6 * 0.2, abs=0.01)
    assert waited < 1.0  # (simulated: the 1.2 s were never slept)
    (summary,) = pacing.summary().values()
    assert summary["accepted"] == 7


class _OddStatuses:
    """A client whose records report a status outside the contract, then ``success``."""

    def __init__(self, statuses: list[str]) -> None:
        self.statuses = statuses
        self.records = RecordReader()

    async def replication_records(self, *_: object, **__: object) -> list[dict[str, object]]:
        return [{"id": "rec-1", "status": self.statuses.pop(0)}]


async def test_a_status_outside_the_contract_is_reported_once_and_polled_on(
    tmp_path: Path,
) -> None:
    pair = PendingCopy("p" * 32, "item-1", "cn-south-1", "d" * 32, "cn-north-1", "rec-1")
    client = _OddStatuses(["deleting", "deleting", "success"])
    time = SimTime(None)
    async with LedgerWriter(tmp_path / "ledger.jsonl") as writer:
        with capture_logs() as logs:
            result = await track_copies(
                cast(CsbsClient, client),
                [pair],
                LedgerRecorder(writer, "track-1"),
                TrackSettings(interval_s=10),
                sleep=time.sleep,
                clock=time.clock,
            )
    assert (result.rounds, result.success) == (3, 1)
    warned = [e for e in logs if e["event"] == "records.unknown_status"]
    assert [(e["status"], e["read_as"]) for e in warned] == [("deleting", "running")]  # once
    # The ledger keeps the service's word, and says it was read as running.
    lines = _copy_lines(tmp_path / "ledger.jsonl")
    assert [(line["copy_status"], line["state"]) for line in lines] == [
        ("deleting", "running"),
        ("success", "success"),
    ]


async def test_failed_copies_exit_3_and_are_planned_again_with_retry_failed(
    make_simulator: MakeSimulator, tmp_path: Path
) -> None:
    async with make_simulator(
        items=30, copy_wait_s=0, copy_duration_s=1, copy_fail_rate=1.0
    ) as sim:
        ledger = await _replicated(sim, tmp_path, rows=4)
        time = SimTime(sim)
        result = await _track(sim, ledger, TrackSettings(interval_s=5), time)
    assert (result.failed, result.success, result.exit_code) == (4, 0, ExitCode.FAILED)
    assert [line["copy_status"] for line in _copy_lines(ledger)] == ["replicating"] * 4 + [
        "fail"
    ] * 4
    history = History.load(ledger)
    assert all(history.copy_failed(key) for key in final_results(ledger))
    manifest = tmp_path / "m.csv"
    skipped = Plan.from_manifest(manifest, default_project_id=None, history=history)
    assert (skipped.totals.to_send, skipped.totals.skipped_failed) == (0, 4)
    retried = Plan.from_manifest(
        manifest, default_project_id=None, history=history, retry_failed=True
    )
    assert (retried.totals.to_send, retried.totals.retry_failed) == (4, 4)


async def test_deadline_stops_with_copies_still_running(
    make_simulator: MakeSimulator, tmp_path: Path
) -> None:
    async with make_simulator(items=30, copy_wait_s=0, copy_duration_s=3600) as sim:
        ledger = await _replicated(sim, tmp_path, rows=3)
        time = SimTime(None)  # the copies never progress
        result = await _track(sim, ledger, TrackSettings(interval_s=10, deadline_s=25), time)
    assert (result.running, result.exit_code) == (3, ExitCode.INTERRUPTED)
    assert time.sleeps == [10, 10, 5]  # the last wait is cut to the deadline, then one round
    assert result.rounds == 4
    assert len(_copy_lines(ledger)) == 3  # "replicating", once each
    assert len(result.still_running) == 3  # named in the log and the summary
    assert len(pending_copies(ledger)) == 3  # a later `track` goes on with them


async def test_transient_errors_are_asked_again_and_unknown_records_are_missing(
    make_simulator: MakeSimulator, tmp_path: Path
) -> None:
    async with make_simulator(items=30, copy_wait_s=0, copy_duration_s=0) as sim:
        ledger = await _replicated(sim, tmp_path, rows=2)
        line = next(r for r in iter_records(ledger) if r["event"] == "result")
        ghost = {**line, "checkpoint_item_id": "0" * 8 + "-0000-4000-8000-" + "0" * 12}
        ghost["replication_record_id"] = "1" * 8 + "-1111-4111-8111-" + "1" * 12
        with ledger.open("ab") as f:
            f.write(orjson.dumps(ghost) + b"\n")
        sim.update_faults(faults_on="all", p503=1.0)
        time = SimTime(sim)

        async def heal(seconds: float) -> None:
            sim.update_faults(p503=0.0)
            await time.sleep(seconds)

        result = await track_ledger(
            ledger, _factory(sim), TrackSettings(interval_s=1), sleep=heal, clock=time.clock
        )
    assert result.rounds == 2
    assert (result.success, result.missing, result.exit_code) == (2, 1, ExitCode.FAILED)


# -- through the CLI -------------------------------------------------------------------------


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> Iterator[Simulator]:
    with simulator_thread(items=30, copy_wait_s=0, copy_duration_s=0, copy_fail_rate=0.5) as sim:
        use_sim_credentials(monkeypatch, sim)
        yield sim


def _cli_run(sim: Simulator, tmp_path: Path, *extra: str) -> tuple[Path, Path]:
    manifest = tmp_path / "m.csv"
    estate_manifest(sim, manifest)
    ledger = tmp_path / "ledger.jsonl"
    argv = ["run", "--manifest", str(manifest), "--ledger", str(ledger), "--endpoint"]
    assert main([*argv, sim.base_url, "--no-progress", "--log-level", "warning", *extra]) == 0
    return manifest, ledger


def test_track_then_resume_retry_failed_sends_the_failed_copies_again(
    served: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _manifest, ledger = _cli_run(served, tmp_path)
    capsys.readouterr()
    track = ["track", str(ledger), "--endpoint", served.base_url, "--interval", "0"]
    assert main([*track, "--log-level", "warning"]) == ExitCode.FAILED
    out = capsys.readouterr().out
    history = History.load(ledger)
    failed = {key for key in final_results(ledger) if history.copy_failed(key)}
    succeeded = set(final_results(ledger)) - failed
    assert failed
    assert succeeded
    assert f"failed {len(failed)}" in out
    assert f"success {len(succeeded)}" in out
    assert "resume --retry-failed" in out

    served.update_faults(copy_fail_rate=0.0)
    resume = ["resume", "--ledger", str(ledger), "--endpoint", served.base_url, "--no-progress"]
    assert main([*resume, "--retry-failed", "--log-level", "warning"]) == ExitCode.OK
    sent = served.counters.replications
    assert {(k[1], k[2]) for k in failed} == {pair for pair, n in sent.items() if n == 2}
    assert {(k[1], k[2]) for k in succeeded} == {pair for pair, n in sent.items() if n == 1}
    capsys.readouterr()
    # The new replicas are tracked in their turn, and all end well.
    assert main([*track, "--log-level", "warning"]) == ExitCode.OK
    assert f"success {len(failed)}" in capsys.readouterr().out


def test_track_exit_codes_without_pending_copies_and_at_the_deadline(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with simulator_thread(items=20, copy_wait_s=0, copy_duration_s=3600) as sim:
        use_sim_credentials(monkeypatch, sim)
        _, ledger = _cli_run(sim, tmp_path)
        capsys.readouterr()
        track = ["track", str(ledger), "--endpoint", sim.base_url, "--log-level", "warning"]
        assert main([*track, "--interval", "0.01", "--deadline", "0.05"]) == 6
        out = capsys.readouterr().out
        assert "still copying" in out
        assert "still running (item -> destination region, last status):" in out
        assert "(replicating)" in out  # each pair named, with the service's word
        sim.advance(3600)
        assert main([*track, "--interval", "0"]) == 0
        assert main([*track]) == 0
        assert "nothing to track" in capsys.readouterr().out
        assert main(["track", str(tmp_path / "none.jsonl"), "--endpoint", sim.base_url]) == 2


# -- the record vocabulary (issue 15) --------------------------------------------------------


async def test_a_skipped_copy_is_final_and_counted_apart(
    make_simulator: MakeSimulator, tmp_path: Path
) -> None:
    """``skip`` is a final record status: tracking ends at once, exit 3, never polled again."""
    async with make_simulator(
        items=30, copy_wait_s=5, copy_duration_s=3600, copy_skip_rate=1.0
    ) as sim:
        ledger = await _replicated(sim, tmp_path, rows=3)
        time = SimTime(sim)
        result = await _track(sim, ledger, TrackSettings(interval_s=10), time)
    assert (result.skipped, result.running, result.exit_code) == (3, 0, ExitCode.FAILED)
    assert result.rounds == 2  # waiting_replicate, then skip: not polled until a deadline
    states = [(line["copy_status"], line["state"]) for line in _copy_lines(ledger)]
    assert states == [("waiting_replicate", "running")] * 3 + [("skip", "skipped")] * 3
    assert pending_copies(ledger) == []  # final: a later `track` has nothing to do


async def test_track_always_ends_and_names_the_copies_still_running(tmp_path: Path) -> None:
    """A word the tool does not know is read as running; the default deadline ends it."""
    assert TrackSettings().deadline_s == 24 * 3600
    pair = PendingCopy("p" * 32, "item-1", "cn-south-1", "d" * 32, "cn-north-1", "rec-1")
    client = _OddStatuses(["paused"] * 10_000)
    time = SimTime(None)
    async with LedgerWriter(tmp_path / "ledger.jsonl") as writer:
        with capture_logs() as logs:
            result = await track_copies(
                cast(CsbsClient, client),
                [pair],
                LedgerRecorder(writer, "track-1"),
                TrackSettings(interval_s=3600),
                sleep=time.sleep,
                clock=time.clock,
            )
    assert time.now == 24 * 3600
    assert (result.running, result.exit_code) == (1, ExitCode.INTERRUPTED)
    named = [e for e in logs if e["event"] == "track.still_running"]
    assert named[0]["pairs"] == ["item-1->cn-south-1 (paused)"]


def test_an_old_ledger_in_the_item_vocabulary_still_reads(tmp_path: Path) -> None:
    """Ledgers written before ``state`` existed speak ``waiting_copy``/``copying``/``fail``."""
    ledger = tmp_path / "old.jsonl"
    ids = {
        "project_id": "p" * 32,
        "source_region": "cn-north-1",
        "destination_region": "cn-south-1",
        "destination_project_id": "d" * 32,
    }
    lines = [
        {"v": 1, "event": "result", "run_id": "r", "checkpoint_item_id": "a", "status":
         "replicated", "replication_record_id": "rec-a", "attempts": 1, **ids},
        {"v": 1, "event": "result", "run_id": "r", "checkpoint_item_id": "b", "status":
         "replicated", "replication_record_id": "rec-b", "attempts": 1, **ids},
        {"v": 1, "event": "copy_status", "run_id": "t", "checkpoint_item_id": "a",
         "replication_record_id": "rec-a", "copy_status": "copying", "progress": 5, **ids},
        {"v": 1, "event": "copy_status", "run_id": "t", "checkpoint_item_id": "b",
         "replication_record_id": "rec-b", "copy_status": "fail", "progress": 37, **ids},
    ]  # fmt: skip
    ledger.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    pending = pending_copies(ledger)
    assert [(p.checkpoint_item_id, p.last_status) for p in pending] == [("a", "copying")]
    assert History.load(ledger).copy_failed(("p" * 32, "b", "cn-south-1"))
