"""What the pool is given and what it gives back: the client and ledger it talks to (as
protocols), its settings, and the statistics of a run."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from orchestrator.config.settings import RunSettings
from orchestrator.engine.pace import PaceSettings
from orchestrator.engine.retry import RetryPolicy
from orchestrator.ledger.format import StopReason
from orchestrator.models import Durable, Outcome, ReplicationTask

__all__ = ["FindsRecords", "PoolSettings", "PoolStats", "Recorder", "Replicator"]


@runtime_checkable
class FindsRecords(Protocol):
    """A client that can say when a record it finds was created (for reconcile)."""

    async def find_replication_record(
        self, task: ReplicationTask
    ) -> tuple[str, float | None] | None: ...


class Replicator(Protocol):
    """What the pool needs from the CSBS client."""

    async def replicate(self, task: ReplicationTask) -> str: ...

    async def find_replication(self, task: ReplicationTask) -> str | None: ...


class Recorder(Protocol):
    """What the pool needs from the ledger side."""

    async def attempt(self, task: ReplicationTask, number: int) -> None:
        """Record, durably, that attempt ``number`` is about to be sent."""

    def attempt_ahead(self, task: ReplicationTask) -> Durable:
        """Record that attempt 1 will be sent; it may be sent once ``durable()`` returns."""

    def result(self, task: ReplicationTask, outcome: Outcome, started: float) -> None:
        """Record the final outcome of a pair (``started`` is a wall-clock timestamp)."""


@dataclass(frozen=True, slots=True)
class PoolSettings:
    concurrency: int = 64
    per_region: int = 32
    per_region_floor: int = 2
    adaptive: bool = True
    rate: float = 0.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    retry_budget_percent: float = 20.0
    retry_budget_min_per_s: float = 10.0  # retries a second allowed whatever the budget
    failure_min_results: int = 1000
    failure_percent: float = 50.0
    grace_period: float = 30.0
    max_duration: float = 0.0
    queue_per_region: int = 4096
    initial_limits: Mapping[str, int] = field(default_factory=dict)
    #: Reconcile: a record created more than this many seconds before the pair's first
    #: attempt was there before it (``already_replicated``), not made by it (clock skew).
    reconcile_skew_s: float = 300.0
    #: Before any answer, stop ("unreachable") once no request has connected for this long,
    #: or as soon as a pair gives up without one having connected; None: never.
    unreachable_after_s: float | None = 60.0
    #: Learn and hold the gateway's rate per (endpoint, source project); None: no pacing.
    pace: PaceSettings | None = None
    #: Rates learned by a previous run, by key label (``endpoint/project``).
    initial_rates: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def from_settings(
        cls,
        settings: RunSettings,
        initial_limits: Mapping[str, int],
        initial_rates: Mapping[str, float] | None = None,
    ) -> PoolSettings:
        """The pool's part of the run's settings (a classmethod here, not a method of
        :class:`RunSettings`: config sits below the engine and knows none of its records),
        with what a previous run learned (``--state-file``)."""
        return cls(
            concurrency=settings.limits.concurrency,
            per_region=settings.limits.per_region,
            per_region_floor=settings.limits.per_region_floor,
            adaptive=settings.limits.adaptive,
            rate=settings.limits.rate,
            retry=RetryPolicy.from_settings(settings),
            retry_budget_percent=settings.retry.retry_budget,
            failure_min_results=settings.threshold.failure_min_results,
            failure_percent=settings.threshold.failure_percent,
            grace_period=settings.run.grace_period,
            max_duration=settings.run.max_duration,
            initial_limits=initial_limits,
            reconcile_skew_s=settings.retry.reconcile_skew,
            pace=PaceSettings.from_settings(settings),
            initial_rates=initial_rates or {},
            # A pair gives up after the retry time anyway; a service never reached, sooner.
            unreachable_after_s=settings.retry.unreachable_s,
        )


@dataclass(slots=True)
class PoolStats:
    counts: Counter[str] = field(default_factory=Counter)
    #: Pairs sent whose answer the stop cut off (an ``attempt`` line, no ``result``):
    #: ``unknown`` in ``report``; ``resume`` asks the service about them before re-sending.
    unknown: int = 0
    requests: int = 0
    retries: int = 0
    stop_reason: StopReason | None = None
    limits: dict[str, list[tuple[float, int]]] = field(default_factory=dict)
    breaker_trips: dict[str, int] = field(default_factory=dict)
    auth_error: str | None = None
    #: Why the run stopped as "unreachable": the last connection error.
    unreachable: str | None = None
    #: Per pace key (``endpoint/project``): the limit measured (None: never throttled), the
    #: pace at the end (None: unpaced), requests accepted and throttled.
    pace: dict[str, dict[str, float | int | None]] = field(default_factory=dict)

    @property
    def finished(self) -> int:
        return sum(self.counts.values())
