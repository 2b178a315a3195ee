"""The shortcuts on every request's path, and resume's look-up, keep the slow paths' meaning.

Cheap timestamps write the very string ``datetime.isoformat`` writes; the global slots end
a wait on a stop and never lose a slot; a retry controller built after a failed first
attempt counts its time from that attempt; the garbage-collector tuning of a run is undone
after it; ``last_record`` finds what a fold of the whole ledger finds; the run's clock is the
one ``anyio.current_time`` reads.
"""

from __future__ import annotations

import asyncio
import gc
import random
from datetime import UTC, datetime
from pathlib import Path

import anyio
import orjson
import pytest

import orchestrator.ledger.last_record as last_record_module
from orchestrator.engine.admission import loop_clock
from orchestrator.engine.job import _collector_tuned
from orchestrator.engine.limiters import Slots, Stopped
from orchestrator.engine.retry import RetryPolicy, retrying
from orchestrator.errors import TransientApiError
from orchestrator.ledger.file import last_record
from orchestrator.ledger.history import History
from orchestrator.ledger.recorder import timestamp


def test_timestamps_are_the_isoformat_string() -> None:
    rng = random.Random(5)
    epochs = [0.0, 1.0 - 1e-9, 1_764_201_234.9999996, 1_764_201_234.0000005, -0.0000004]
    epochs += [rng.uniform(0, 4e9) for _ in range(2000)]
    epochs += [1_764_201_234 + rng.randrange(10**6) / 1e6 + 5e-7 for _ in range(2000)]
    # Starts and ends of requests that span a second's turn, and older seconds among them.
    epochs += [1_764_201_234 + rng.choice((-3, 0, 1, 1, 2)) + rng.random() for _ in range(2000)]
    for epoch in epochs:
        expected = datetime.fromtimestamp(epoch, UTC).isoformat(timespec="microseconds")
        assert timestamp(epoch) == expected
    assert timestamp().endswith("+00:00")


@pytest.mark.anyio
async def test_a_stop_ends_stoppable_slot_waits_only() -> None:
    slots = Slots(1)
    assert slots.try_take()
    outcomes: list[str] = []

    async def wait(stoppable: bool) -> None:
        try:
            await slots.take(stoppable=stoppable)
        except Stopped:
            outcomes.append("stopped")
        else:
            outcomes.append("granted")
            slots.release()

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait, True)
        tg.start_soon(wait, False)
        await anyio.wait_all_tasks_blocked()
        slots.stop_waiting()
        await anyio.wait_all_tasks_blocked()
        assert outcomes == ["stopped"]
        slots.release()  # the follow-up that may not be stopped gets the slot
    assert outcomes == ["stopped", "granted"]
    assert slots.try_take()  # and gave it back


@pytest.mark.anyio
async def test_a_cancelled_slot_waiter_loses_no_slot() -> None:
    slots = Slots(1)
    assert slots.try_take()

    async def use() -> None:
        await slots.take(stoppable=False)
        slots.release()  # (if the cancellation came too late to stop the wait)

    async with anyio.create_task_group() as tg:
        tg.start_soon(use)
        await anyio.wait_all_tasks_blocked()
        slots.release()  # handed to the waiter ...
        tg.cancel_scope.cancel()  # ... which is cancelled before it runs
    assert slots.try_take()
    assert not slots.try_take()


@pytest.mark.anyio
async def test_a_controller_after_a_first_attempt_counts_time_from_it() -> None:
    now = [100.0]

    async def sleep(seconds: float) -> None:
        now[0] += seconds

    policy = RetryPolicy(max_attempts=50, max_elapsed_s=10.0, base_delay_s=1.0, max_delay_s=1.0)
    started = now[0]
    now[0] += 9.5  # the first attempt, made outside the controller, took 9.5 s
    attempts = 0

    async def run() -> None:
        nonlocal attempts
        async for attempt in retrying(
            policy, sleep=sleep, clock=lambda: now[0], rng=random.Random(1), started=started
        ):
            with attempt:
                attempts += 1
                raise TransientApiError("503")

    with pytest.raises(TransientApiError):
        await run()
    assert now[0] - started < 10.0 + 1.0
    assert attempts < 3  # not another 10 s of attempts


def test_the_collector_is_restored_after_a_run() -> None:
    before = gc.get_threshold()
    with _collector_tuned():
        assert gc.get_threshold()[0] > before[0]
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def _line(**fields: object) -> bytes:
    return orjson.dumps({"v": 1, **fields}) + b"\n"


@pytest.mark.parametrize("chunk", [1, 7, 64, 1 << 20])
def test_last_record_finds_what_the_fold_finds(
    tmp_path: Path, chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(last_record_module, "_SCAN_CHUNK", chunk)
    path = tmp_path / "ledger.jsonl"
    path.write_bytes(
        _line(event="run_started", run_id="a", pad="x" * 200)
        + _line(event="result", status="failed", error_msg="run_started: no")
        + _line(event="run_started", run_id="b")
        + _line(event="result", status="gave_up", error_msg="run_started")
        + b'{"v":1,"event":"run_sta'  # torn by a crash
    )
    found = last_record(path, "run_started")
    assert found is not None
    assert found["run_id"] == "b"
    path.write_bytes(path.read_bytes().rsplit(b"\n", 1)[0] + b"\n")  # without the torn line
    assert found == History.load(path).last_run_started


def test_last_record_of_a_ledger_without_one(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    path.write_bytes(b"")
    assert last_record(path, "run_started") is None
    path.write_bytes(_line(event="attempt", error_msg="run_started") + b"not json run_started\n")
    assert last_record(path, "run_started") is None


@pytest.mark.anyio
async def test_the_run_clock_is_the_one_anyio_reads() -> None:
    clock = loop_clock()
    assert clock == asyncio.get_running_loop().time
    before = anyio.current_time()
    assert before <= clock() <= anyio.current_time()


def test_outside_a_loop_the_run_clock_is_anyios() -> None:
    assert loop_clock() is anyio.current_time
