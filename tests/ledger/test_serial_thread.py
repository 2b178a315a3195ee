"""SerialThread: the ledger's commit thread. Calls run in order, errors come back, and a
cancelled awaiter waits for its call unless it abandons it."""

from __future__ import annotations

import threading

import anyio
import pytest

from orchestrator.ledger.serial_thread import SerialThread

pytestmark = pytest.mark.asyncio


async def test_calls_run_in_submission_order_off_the_event_loop() -> None:
    seen: list[tuple[int, str]] = []
    async with SerialThread("t-order") as thread, anyio.create_task_group() as tg:
        for i in range(20):

            def call(i: int = i) -> None:
                seen.append((i, threading.current_thread().name))

            tg.start_soon(thread.run, call)
            await anyio.lowlevel.checkpoint()  # each submitted before the next starts
    assert [i for i, _ in seen] == list(range(20))
    assert {name for _, name in seen} == {"t-order"}
    # Leaving lets the thread end (a nightly scheduler opens a ledger writer per job).
    for alive in [t for t in threading.enumerate() if t.name == "t-order"]:
        alive.join(5)
        assert not alive.is_alive()


async def test_an_error_in_the_call_is_raised_to_the_awaiter() -> None:
    def fail() -> None:
        raise OSError(28, "No space left on device")

    async with SerialThread("t") as thread:
        with pytest.raises(OSError, match="No space left"):
            await thread.run(fail)
        await thread.run(lambda: None)  # the thread survives it


async def test_a_cancelled_awaiter_still_waits_for_its_call() -> None:
    started, release = threading.Event(), threading.Event()
    finished: list[bool] = []
    left: list[list[bool]] = []  # what had finished when the awaiter left
    scope = anyio.CancelScope()

    def slow() -> None:
        started.set()
        release.wait(5)
        finished.append(True)

    async with SerialThread("t") as thread:

        async def awaiter() -> None:
            with scope:
                await thread.run(slow)
            left.append(list(finished))

        async with anyio.create_task_group() as tg:
            tg.start_soon(awaiter)
            await anyio.to_thread.run_sync(started.wait, 5)
            scope.cancel()
            for _ in range(10):
                await anyio.lowlevel.checkpoint()
            assert not left  # cancelled, but its call still runs: it waits
            release.set()
    assert scope.cancelled_caught
    assert left == [[True]]


async def test_an_abandoned_call_runs_on_but_its_awaiter_leaves() -> None:
    started, release, finished = threading.Event(), threading.Event(), threading.Event()
    left: list[bool] = []  # whether the call had finished when the awaiter left
    scope = anyio.CancelScope()

    def slow() -> None:
        started.set()
        release.wait(5)
        finished.set()

    async with SerialThread("t") as thread:

        async def awaiter() -> None:
            with scope:
                await thread.run(slow, abandon_on_cancel=True)
            left.append(finished.is_set())

        async with anyio.create_task_group() as tg:
            tg.start_soon(awaiter)
            await anyio.to_thread.run_sync(started.wait, 5)
            scope.cancel()
        assert left == [False]  # the awaiter left while the call still ran
        release.set()
        await thread.run(lambda: None)  # queued behind it: so it has ended
        assert finished.is_set()
