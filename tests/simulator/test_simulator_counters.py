"""The replicate arrival histogram: sliding one-second maximum, with a fake clock."""

from __future__ import annotations

from orchestrator.simulator.counters import ARRIVAL_BIN_S, Counters


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def arrive(counters: Counters, clock: FakeClock, at: float, count: int = 1) -> None:
    clock.now = 1000.0 + at
    for _ in range(count):
        counters.arrived()


def test_no_arrivals_means_an_empty_histogram() -> None:
    counters = Counters(FakeClock())
    assert counters.max_arrivals_per_second() == 0
    assert counters.snapshot()["replicate_arrivals"] == {
        "bin_s": ARRIVAL_BIN_S,
        "max_per_second": 0,
        "bins": [],
        "first_bin": None,
    }


def test_the_maximum_is_over_a_sliding_second_not_aligned_seconds() -> None:
    clock = FakeClock()
    counters = Counters(clock)
    # 5 late in one aligned second and 5 early in the next: 10 within 0.2 s.
    arrive(counters, clock, 0.85, 5)
    arrive(counters, clock, 1.05, 5)
    arrive(counters, clock, 3.55, 4)
    assert counters.max_arrivals_per_second() == 10
    bins = counters.snapshot()["replicate_arrivals"]["bins"]
    assert sum(bins) == 14
    assert (bins[0], bins[2], bins[-1]) == (5, 5, 4)
    assert len(bins) == 28  # 0.8 s .. 3.5 s in 100 ms bins, empty ones included
    assert counters.snapshot()["replicate_arrivals"]["first_bin"] == 10_008  # at 1000.8 s


def test_arrivals_further_apart_than_a_second_are_not_added() -> None:
    clock = FakeClock()
    counters = Counters(clock)
    arrive(counters, clock, 0.0, 3)
    arrive(counters, clock, 1.0, 3)
    arrive(counters, clock, 2.0, 3)
    assert counters.max_arrivals_per_second() == 3
