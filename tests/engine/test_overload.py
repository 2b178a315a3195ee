"""The adaptive limit and the breaker, driven by a fake clock: no sleeping."""

from __future__ import annotations

import anyio
import pytest

from orchestrator.engine.overload import GateSettings, RegionGate


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make_gate(**kw: object) -> tuple[RegionGate, FakeClock]:
    clock = FakeClock()
    settings = GateSettings(**{"ceiling": 32, "floor": 2, **kw})  # type: ignore[arg-type]
    return RegionGate("cn-east-2", settings, clock=clock), clock


def test_starts_at_ceiling_or_learned_value() -> None:
    assert make_gate()[0].limit == 32
    assert make_gate(initial=5)[0].limit == 5
    assert make_gate(initial=1)[0].limit == 2  # clamped to the floor


def test_overload_burst_is_one_decrease_per_window() -> None:
    gate, _ = make_gate()
    for _ in range(20):  # twenty 503s that were in flight together
        gate.on_overload()
    assert gate.limit == int(32 * 0.7)  # once, not twenty times


def test_multiplicative_decrease_stops_at_floor_and_additive_increase_recovers() -> None:
    gate, _ = make_gate(breaker_threshold=10_000)
    for _ in range(2000):
        gate.on_overload()
    assert gate.limit == 2
    for _ in range(5000):
        gate.on_success()
    assert gate.limit == 32
    limits = [limit for _, limit in gate.history]
    assert min(limits) == 2
    assert limits[-1] == 32


def test_additive_increase_is_about_one_per_window() -> None:
    gate, _ = make_gate(initial=10)
    for _ in range(10):
        gate.on_success()
    assert gate.limit in {10, 11}
    for _ in range(30):
        gate.on_success()
    assert 12 <= gate.limit <= 14


def test_fixed_limits_when_not_adaptive() -> None:
    gate, _ = make_gate(adaptive=False)
    for _ in range(200):
        gate.on_overload()
        gate.on_success()
    assert gate.limit == 32


@pytest.mark.anyio
async def test_breaker_opens_pauses_probes_and_closes() -> None:
    gate, clock = make_gate(breaker_threshold=3, open_s=5.0)
    for _ in range(3):
        gate.on_overload()
    assert gate.is_open
    assert gate.breaker_trips == 1

    admitted: list[str] = []
    answered = [anyio.Event(), anyio.Event()]  # one per probe, in admission order

    async def enter(name: str) -> None:
        await gate.acquire()
        order = len(admitted)
        admitted.append(name)
        await answered[order].wait()
        gate.release()

    async with anyio.create_task_group() as tg:
        tg.start_soon(enter, "a")
        tg.start_soon(enter, "b")
        await anyio.sleep(0.01)
        assert admitted == []  # paused while open
        clock.now += 5.0
        gate._notify()  # wake the waiters as the timer would
        await anyio.sleep(0.01)
        assert len(admitted) == 1  # exactly one probe
        gate.on_overload()  # the probe failed: open again, longer
        answered[0].set()
        assert gate.is_open
        clock.now += 10.0
        gate._notify()
        await anyio.sleep(0.01)
        assert len(admitted) == 2  # the second probe
        gate.on_success()
        answered[1].set()
    assert not _is_open(gate)
    assert gate.breaker_trips == 1


def _is_open(gate: RegionGate) -> bool:
    # A call, not the property: mypy would otherwise keep the earlier narrowing to True.
    return gate.is_open


@pytest.mark.anyio
async def test_open_since_and_a_probe_cancelled_before_it_went() -> None:
    """``open_since`` stays at the first opening while probes fail; a probe cancelled while
    it waits for a slot hands the probe to another waiter instead of stalling the region."""
    gate, clock = make_gate(ceiling=2, floor=1, initial=1, breaker_threshold=1, open_s=1.0)
    free_slot = anyio.Event()
    admitted = anyio.Event()

    async def holder() -> None:
        await gate.acquire()
        await free_slot.wait()
        gate.release()

    async def cancelled_probe() -> None:
        with anyio.move_on_after(0.02):
            await gate.acquire()  # becomes the probe, then waits for the slot

    async def other() -> None:
        await gate.acquire()
        admitted.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(holder)
        await anyio.sleep(0.01)
        gate.on_overload()
        assert gate.open_since == 100.0
        clock.now += 1.0
        gate._notify()
        await cancelled_probe()
        tg.start_soon(other)
        free_slot.set()
        with anyio.fail_after(1):
            await admitted.wait()
    gate.on_overload()  # that probe failed too: still open since the first time
    assert gate.open_since == 100.0
    gate.on_success()
    assert gate.open_since is None
