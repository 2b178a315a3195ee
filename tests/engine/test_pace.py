"""The rate controller on fake time: a token-bucket gateway, answers after a fixed latency."""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio
import pytest

from orchestrator.engine.pace import (
    Pacer,
    PaceSettings,
    RateController,
    is_throttle,
    key_label,
    throttle_window,
)
from orchestrator.engine.pace_gate import PaceGate


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Gateway:
    """The simulator's bucket: ``limit(t)`` tokens a second, ``burst`` at most."""

    limit: Callable[[float], float]
    burst: float = 20.0
    tokens: float = 20.0
    last: float = 0.0

    def take(self, t: float) -> bool:
        rate = self.limit(t)
        self.tokens = min(self.burst, self.tokens + (t - self.last) * rate)
        self.last = t
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


@dataclass
class Trace:
    sends: list[tuple[float, bool]] = field(default_factory=list)

    def accepted_rate(self, start: float, end: float) -> float:
        return sum(1 for t, ok in self.sends if start <= t < end and ok) / (end - start)

    def refused_share(self, start: float, end: float) -> float:
        window = [ok for t, ok in self.sends if start <= t < end]
        return window.count(False) / max(1, len(window))


def drive(
    controller: RateController,
    clock: FakeClock,
    gateway: Gateway,
    *,
    until: float,
    latency: float = 0.01,
) -> Trace:
    """Always a request waiting (a saturated run): each one reserves its slot, goes out at
    it, and its answer reaches the controller ``latency`` later, in time order."""
    trace = Trace()
    answers: list[tuple[float, float, bool]] = []  # (answered at, sent at, accepted)
    # An unpaced controller sends as fast as the fake loop can: a send every 0.1 ms.
    next_send = clock.now + max(1e-4, controller.reserve())
    while next_send < until:
        while answers and answers[0][0] <= next_send:
            at, sent, ok = heapq.heappop(answers)
            clock.now = at
            controller.on_answer(sent, throttled=not ok, window_s=None if ok else 1.0)
        clock.now = next_send
        ok = gateway.take(next_send)
        trace.sends.append((next_send, ok))
        heapq.heappush(answers, (next_send + latency, next_send, ok))
        next_send = clock.now + max(1e-4, controller.reserve())
    clock.now = until
    return trace


def test_converges_on_an_undisclosed_limit() -> None:
    clock = FakeClock()
    controller = RateController(PaceSettings(), clock)
    trace = drive(controller, clock, Gateway(lambda _: 100.0), until=30.0)
    # Slow start and the first measurement are over within five seconds...
    assert controller.limit == pytest.approx(100.0, rel=0.03)
    # ...after which the run uses at least 95 % of the allowance, with few refusals.
    assert trace.accepted_rate(5.0, 30.0) >= 95.0
    assert trace.refused_share(5.0, 30.0) <= 0.03
    assert trace.refused_share(0.0, 30.0) <= 0.05


def test_follows_a_drop_and_a_recovery_within_ten_seconds() -> None:
    clock = FakeClock()
    controller = RateController(PaceSettings(), clock)

    def limit(t: float) -> float:
        return 40.0 if 20.0 <= t < 40.0 else 100.0

    trace = drive(controller, clock, Gateway(limit), until=60.0)
    assert trace.accepted_rate(10.0, 20.0) >= 95.0
    # Down: within 10 s of the drop the run sends at the new limit without refusals...
    assert trace.accepted_rate(30.0, 40.0) >= 38.0
    assert trace.refused_share(30.0, 40.0) <= 0.03
    sends_after_drop = [t for t, _ in trace.sends if 30.0 <= t < 40.0]
    assert len(sends_after_drop) / 10.0 <= 42.0
    # ...and up: within 10 s of the recovery it uses the raised limit again.
    assert trace.accepted_rate(50.0, 60.0) >= 95.0
    assert trace.refused_share(50.0, 60.0) <= 0.03


def test_a_user_ceiling_caps_the_pace() -> None:
    clock = FakeClock()
    controller = RateController(PaceSettings(ceiling=30.0), clock)
    trace = drive(controller, clock, Gateway(lambda _: 100.0), until=20.0)
    assert trace.accepted_rate(2.0, 20.0) <= 30.5
    assert trace.refused_share(0.0, 20.0) == 0.0


def test_a_learned_start_needs_no_slow_start() -> None:
    clock = FakeClock()
    controller = RateController(PaceSettings(), clock, initial=50.0)
    trace = drive(controller, clock, Gateway(lambda _: 50.0, burst=5.0, tokens=5.0), until=10.0)
    assert trace.accepted_rate(0.0, 10.0) >= 47.0
    assert trace.refused_share(0.0, 10.0) <= 0.03


def test_no_burst_after_a_pause() -> None:
    clock = FakeClock()
    controller = RateController(PaceSettings(), clock, initial=10.0)
    assert controller.reserve() == 0.0
    assert controller.reserve() == pytest.approx(0.1)
    clock.now = 100.0  # idle for a long time: no credit is saved up
    assert controller.reserve() == 0.0
    # (the hold is over: the probe's first step of 2 % applies, but it never grew: idle)
    assert controller.reserve() == pytest.approx(0.1 / 1.02)
    assert controller.reserve() == pytest.approx(0.2 / 1.02)


def test_unthrottled_runs_end_up_unpaced() -> None:
    clock = FakeClock()
    controller = RateController(PaceSettings(), clock)
    # From 20/s, a doubling every 50 ms at most: 1e5/s after 12.3 doublings.
    drive(controller, clock, Gateway(lambda _: 1e9, burst=1e9, tokens=1e9), until=2.0)
    assert math.isinf(controller.rate)
    assert controller.limit is None


def test_keys_are_separate() -> None:
    clock = FakeClock()
    pacer = Pacer(PaceSettings(), clock, initial={"r1/p1": 40.0})
    assert pacer["r1", "p1"].rate == 40.0
    assert pacer["r1", "p2"].rate == PaceSettings().start_rate
    pacer["r1", "p1"].limit = 40.0
    assert pacer.learned() == {"r1/p1": 40.0}
    assert key_label(("r1", "p2")) == "r1/p2"


@pytest.mark.parametrize(
    ("status", "code", "msg", "expected"),
    [
        (429, None, None, True),
        (503, "APIG.0308", None, True),
        (503, None, "policy user over ratelimit", True),
        (503, "CSBS.0001", "service busy", False),
        (500, None, None, False),
    ],
)
def test_what_counts_as_throttling(
    status: int, code: str | None, msg: str | None, expected: bool
) -> None:
    assert is_throttle(status, code, msg) is expected


def test_the_gateway_window() -> None:
    msg = "policy user over ratelimit, limit:100, time:1 second"
    assert throttle_window(msg) == 1.0
    assert throttle_window("limit:5, time:1 minute") == 60.0
    assert throttle_window("nothing") is None


def test_the_gate_passes_one_request_per_slot_without_waiting_when_due() -> None:
    clock = FakeClock()
    gate = PaceGate(RateController(PaceSettings(), clock, initial=10.0))
    assert gate.try_pass()
    assert not gate.try_pass()  # the next slot is 0.1 s away
    clock.now = 0.1
    assert gate.try_pass()


@pytest.mark.anyio
async def test_waiters_go_in_order_at_the_rate_of_when_their_turn_comes() -> None:
    clock = FakeClock()
    controller = RateController(PaceSettings(), clock, initial=10.0)
    went: list[float] = []

    async def sleep(seconds: float) -> None:
        clock.now += seconds
        await anyio.lowlevel.checkpoint()

    gate = PaceGate(controller, sleep=sleep)

    async def send() -> None:
        await gate.wait()
        went.append(round(clock.now, 6))

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(send)
    assert went == [0.0, 0.1, 0.2]
    # The rate a waiter meets is read when its turn comes: a cut applies to the next slot.
    controller.on_answer(0.15, throttled=True)
    assert controller.rate < 10.0


@pytest.mark.anyio
async def test_a_due_request_passes_unless_the_head_sleeps_for_its_slot() -> None:
    """Waiters handed the lock but not yet run do not make a due request queue (every
    request of a run went through the lock that way, a loop trip each); the head asleep
    for its slot is never overtaken."""
    clock = FakeClock()
    gate = PaceGate(
        RateController(PaceSettings(), clock, initial=10.0), sleep=lambda _: woken.wait()
    )
    woken = anyio.Event()
    went: list[tuple[str, float]] = []

    async def send(name: str) -> None:
        await gate.wait()
        went.append((name, round(clock.now, 6)))

    async with anyio.create_task_group() as tg:
        tg.start_soon(send, "a")  # the slot at 0
        tg.start_soon(send, "b")  # asleep for the slot at 0.1...
        tg.start_soon(send, "c")  # ...and queued behind it
        await anyio.wait_all_tasks_blocked()
        clock.now = 0.1
        assert not gate.try_pass()  # due, but b sleeps for it
        woken.set()
        await anyio.lowlevel.checkpoint()  # b takes its slot, hands the lock to c
        assert went == [("a", 0.0), ("b", 0.1)]
        clock.now = 0.2
        assert gate.try_pass()  # c has not run yet: the free slot goes at once
        woken = anyio.Event()
        await anyio.wait_all_tasks_blocked()  # c, asleep for the next slot (0.3)
        clock.now = 0.35
        woken.set()
    assert went[2:] == [("c", 0.35)]
