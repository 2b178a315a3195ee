"""The worker pool: retries and backoff, outcomes, limits, rate, stopping.

Most cases talk real HTTP to the in-process simulator through :class:`CsbsClient`. Where the
simulator cannot produce a case on demand (an exact status sequence, in-flight counting,
slow answers for a deadline) a small fake :class:`Replicator` stands in. Backoff never
really sleeps: the pool's ``sleep`` is injected and records what it was asked to wait.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import orjson
import pytest
from structlog.testing import capture_logs

from orchestrator.engine import pool as pool_module
from orchestrator.engine.job_spec import exit_code_for
from orchestrator.engine.limiters import RateLimiter
from orchestrator.engine.pace import PaceSettings
from orchestrator.engine.pool import Pool
from orchestrator.engine.pool_types import PoolSettings, PoolStats, Replicator
from orchestrator.engine.retry import RetryPolicy
from orchestrator.errors import (
    AlreadyReplicatedError,
    ApiError,
    AuthError,
    ErrorTable,
    PermanentApiError,
    TransientApiError,
    TransportError,
)
from orchestrator.exitcodes import ExitCode
from orchestrator.ledger.file import LedgerWriter
from orchestrator.ledger.format import StopReason
from orchestrator.ledger.history import History
from orchestrator.ledger.recorder import LedgerRecorder
from orchestrator.models import Durable, Outcome, PairKey, ReplicationTask, ResultStatus, WorkItem
from orchestrator.service.aksk import AkSkSigner
from orchestrator.service.auth import Secret
from orchestrator.service.classify import error_for_response
from orchestrator.service.client import CsbsClient
from orchestrator.service.settings import ClientSettings
from orchestrator.simulator import Simulator
from orchestrator.simulator.csbs import GET_ITEM, REPLICATE
from tests.helpers.runkit import fresh_items, task_for

MakeSimulator = Callable[..., Simulator]
pytestmark = pytest.mark.anyio

BASE, CAP = 0.1, 0.4
FAST_RETRY = RetryPolicy(max_attempts=5, base_delay_s=BASE, max_delay_s=CAP)
PROJECT = "0" * 24 + "5ca1ab1e"
DEST_PROJECT = "d" * 32


# -- helpers ------------------------------------------------------------------------------------


class _OnDisk:
    async def durable(self) -> None:
        await anyio.lowlevel.checkpoint()


@dataclass
class FakeRecorder:
    """Keeps what the pool records, in order."""

    attempts: list[tuple[PairKey, int]] = field(default_factory=list)
    results: dict[PairKey, Outcome] = field(default_factory=dict)

    async def attempt(self, task: ReplicationTask, number: int) -> None:
        self.attempts.append((task.key, number))

    def attempt_ahead(self, task: ReplicationTask) -> Durable:
        self.attempts.append((task.key, 1))
        return _OnDisk()

    def result(self, task: ReplicationTask, outcome: Outcome, started: float) -> None:
        assert task.key not in self.results, f"two results for {task.key}"
        self.results[task.key] = outcome

    def attempts_of(self, key: PairKey) -> list[int]:
        return [n for k, n in self.attempts if k == key]


@dataclass
class SleepLog:
    """The pool's injected backoff sleep: records the request, waits for nothing.

    ``then`` runs after each sleep (e.g. to change the simulator's faults).
    """

    asked: list[float] = field(default_factory=list)
    then: Callable[[], object] | None = None

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)
        if self.then is not None:
            self.then()
        await anyio.lowlevel.checkpoint()


class ApplyThenDrop(Exception):
    """Script step: the request is applied, then the answer is lost."""


Step = BaseException | type[ApplyThenDrop] | str


class FakeReplicator:
    """A scripted service: per item, a list of steps (an exception to raise, ApplyThenDrop,
    or a record id); after the script, success. Counts what is in flight, all requests
    (replicate and find_replication) together, overall and per destination region."""

    def __init__(self, scripts: dict[str, list[Step]] | None = None, *, delay: float = 0.0) -> None:
        self.scripts = {k: list(v) for k, v in (scripts or {}).items()}
        self.delay = delay
        self.applied: dict[PairKey, str] = {}
        self.sent: Counter[PairKey] = Counter()
        self.lookups: Counter[PairKey] = Counter()
        self.in_flight = 0
        self.in_flight_region: Counter[str] = Counter()
        self.max_in_flight = 0
        self.max_in_flight_region: Counter[str] = Counter()
        self.started_at: list[float] = []
        #: Called as each replicate request arrives, before it counts as in flight.
        self.on_replicate: Callable[[ReplicationTask], None] | None = None

    @asynccontextmanager
    async def _request(self, task: ReplicationTask) -> AsyncIterator[None]:
        region = task.destination_region
        self.in_flight += 1
        self.in_flight_region[region] += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.max_in_flight_region[region] = max(
            self.max_in_flight_region[region], self.in_flight_region[region]
        )
        self.started_at.append(anyio.current_time())
        try:
            if self.delay:
                await anyio.sleep(self.delay)
            else:
                await anyio.lowlevel.checkpoint()
            yield
        finally:
            self.in_flight -= 1
            self.in_flight_region[region] -= 1

    async def replicate(self, task: ReplicationTask) -> str:
        if self.on_replicate is not None:
            self.on_replicate(task)
        async with self._request(task):
            self.sent[task.key] += 1
            if task.key in self.applied:
                raise AlreadyReplicatedError(
                    "already", http_status=400, error_code="BackupService.1009"
                )
            script = self.scripts.get(task.checkpoint_item_id, [])
            step: Step = script.pop(0) if script else f"rec-{task.checkpoint_item_id}"
            if step is ApplyThenDrop:
                self.applied[task.key] = f"rec-{task.checkpoint_item_id}"
                raise TransportError("cut after apply", maybe_applied=True)
            if isinstance(step, BaseException):
                raise step
            assert isinstance(step, str)
            self.applied[task.key] = step
            return step

    async def find_replication(self, task: ReplicationTask) -> str | None:
        async with self._request(task):
            self.lookups[task.key] += 1
            return self.applied.get(task.key)


def make_task(n: int, region: str = "cn-east-2") -> ReplicationTask:
    return ReplicationTask(
        checkpoint_item_id=f"item-{n:04d}",
        project_id=PROJECT,
        destination_region=region,
        destination_project_id=DEST_PROJECT,
        line=n + 2,
    )


def all_not_sent(outcomes: Iterable[Outcome]) -> bool:
    """Each was given up as never sent: a stop came before its request went out."""
    return all(o.attempts == 0 and "not sent" in (o.error_msg or "") for o in outcomes)


def http_error(status: int, code: str | None = None, msg: str = "x") -> ApiError:
    """The exception the client raises for this answer (the real classification)."""
    body = b'{"error_code": "%s", "error_msg": "%s"}' % ((code or "X.1").encode(), msg.encode())
    return error_for_response(status, body, {}, table=ErrorTable(), what="POST /replicate")


def settings(**changes: object) -> PoolSettings:
    base: dict[str, object] = {
        "concurrency": 8,
        "per_region": 4,
        "retry": FAST_RETRY,
        "retry_budget_percent": 100.0,
        "grace_period": 5.0,
    }
    base.update(changes)
    return PoolSettings(**base)  # type: ignore[arg-type]


async def run_pool(
    client: Replicator,
    tasks: Sequence[ReplicationTask],
    *,
    pool_settings: PoolSettings | None = None,
    sleep: SleepLog | None = None,
    work: Iterable[WorkItem] | None = None,
) -> tuple[PoolStats, FakeRecorder, Pool]:
    recorder = FakeRecorder()
    pool = Pool(
        client,
        recorder,
        pool_settings or settings(),
        sleep=sleep or SleepLog(),
        rng=random.Random(7),
    )
    regions = sorted({t.destination_region for t in tasks})
    stats = await pool.run(work if work is not None else (WorkItem(t) for t in tasks), regions)
    return stats, recorder, pool


@asynccontextmanager
async def sim_client(sim: Simulator) -> AsyncIterator[CsbsClient]:
    auth = AkSkSigner(sim.config.ak, Secret(sim.config.sk))
    async with CsbsClient(ClientSettings(endpoint=sim.base_url), auth) as client:
        yield client


def assert_full_jitter(asked: Sequence[float]) -> None:
    """The n-th backoff (0-based) of one pair lies in [0, min(cap, base * 2**n)]."""
    for n, seconds in enumerate(asked):
        assert 0.0 <= seconds <= min(CAP, BASE * 2**n) + 1e-12, (n, seconds)


# -- retries and backoff ------------------------------------------------------------------------


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504])
async def test_transient_statuses_are_retried_with_full_jitter(status: int) -> None:
    fake = FakeReplicator({"item-0000": [http_error(status)] * 3})
    sleep = SleepLog()
    stats, recorder, _ = await run_pool(fake, [make_task(0)], sleep=sleep)
    outcome = recorder.results[make_task(0).key]
    assert outcome.status is ResultStatus.REPLICATED
    assert outcome.replication_record_id == "rec-item-0000"
    assert outcome.attempts == 4
    assert recorder.attempts_of(make_task(0).key) == [1, 2, 3, 4]
    assert len(sleep.asked) == 3
    assert_full_jitter(sleep.asked)
    assert (stats.requests, stats.retries) == (4, 3)


async def test_connection_errors_are_retried() -> None:
    refused = TransportError("cannot connect", maybe_applied=False)
    fake = FakeReplicator({"item-0000": [refused, refused]})
    sleep = SleepLog()
    _, recorder, _ = await run_pool(fake, [make_task(0)], sleep=sleep)
    assert recorder.results[make_task(0).key].status is ResultStatus.REPLICATED
    assert fake.sent[make_task(0).key] == 3
    # Nothing was sent, so nothing needs reconciling.
    assert fake.lookups[make_task(0).key] == 0
    assert_full_jitter(sleep.asked)


async def test_backoff_is_jittered_over_the_whole_range() -> None:
    """Full jitter, not a fixed delay: first backoffs of many pairs spread over [0, base]."""
    tasks = [make_task(n) for n in range(60)]
    fake = FakeReplicator({t.checkpoint_item_id: [http_error(503)] for t in tasks})
    sleep = SleepLog()
    await run_pool(fake, tasks, sleep=sleep)
    assert len(sleep.asked) == 60
    assert max(sleep.asked) <= BASE
    assert min(sleep.asked) < 0.2 * BASE
    assert max(sleep.asked) > 0.8 * BASE


async def test_retry_after_is_honoured_and_capped() -> None:
    hinted = TransientApiError("slow down", http_status=429, retry_after=7.0)
    huge = TransientApiError("slow down", http_status=503, retry_after=100_000.0)
    fake = FakeReplicator({"item-0000": [hinted], "item-0001": [huge]})
    sleep = SleepLog()
    _, recorder, _ = await run_pool(fake, [make_task(0), make_task(1)], sleep=sleep)
    assert sorted(sleep.asked) == [7.0, RetryPolicy().retry_after_cap_s]
    assert all(o.status is ResultStatus.REPLICATED for o in recorder.results.values())


async def test_simulator_503_with_retry_after_then_success(make_simulator: MakeSimulator) -> None:
    async with make_simulator(items=40, p503=1.0, retry_after_s=2) as sim, sim_client(sim) as c:
        item = fresh_items(sim)[0]
        task = task_for(sim, item)
        sleep = SleepLog(then=lambda: sim.update_faults(p503=0.0))
        _, recorder, _ = await run_pool(c, [task], sleep=sleep)
        outcome = recorder.results[task.key]
        assert outcome.status is ResultStatus.REPLICATED
        record = sim.state.latest_record(item.id, task.destination_region)
        assert record is not None
        assert outcome.replication_record_id == record.id
        assert sleep.asked == [2.0]  # the server's 2 s beat the 0.1 s jittered backoff
        assert sim.counters.requests_for(REPLICATE, 503) == 1
        assert sim.counters.requests_for(REPLICATE, 200) == 1


@pytest.mark.parametrize(
    ("knobs", "status"),
    [({"p500": 1.0}, 500), ({"throttle_rate": 0.001, "throttle_burst": 1}, 429)],
)
async def test_simulator_500_and_429_are_retried(
    make_simulator: MakeSimulator, knobs: dict[str, float], status: int
) -> None:
    async with make_simulator(items=40, **knobs) as sim, sim_client(sim) as c:
        # The throttle's one token is taken by a first pair; the second pair is throttled.
        tasks = [task_for(sim, item) for item in fresh_items(sim)[:2]]
        sleep = SleepLog(then=lambda: sim.update_faults(p500=0.0, throttle_rate=0.0))
        _, recorder, _ = await run_pool(
            c, tasks, sleep=sleep, pool_settings=settings(concurrency=1, per_region=1)
        )
        assert all(o.status is ResultStatus.REPLICATED for o in recorder.results.values())
        assert sim.counters.requests_for(REPLICATE, status) == 1
        assert sim.counters.requests_for(REPLICATE, 200) == 2
        assert max(sim.counters.replications.values()) == 1


async def test_attempts_are_bounded_then_gave_up(make_simulator: MakeSimulator) -> None:
    async with make_simulator(items=40, p503=1.0) as sim, sim_client(sim) as c:
        task = task_for(sim, fresh_items(sim)[0])
        sleep = SleepLog()
        policy = RetryPolicy(max_attempts=3, base_delay_s=BASE, max_delay_s=CAP)
        stats, recorder, _ = await run_pool(
            c, [task], sleep=sleep, pool_settings=settings(retry=policy)
        )
        outcome = recorder.results[task.key]
        assert outcome.status is ResultStatus.GAVE_UP
        assert (outcome.http_status, outcome.error_code, outcome.attempts) == (503, None, 3)
        assert recorder.attempts_of(task.key) == [1, 2, 3]
        assert sim.counters.requests_for(REPLICATE, 503) == 3
        assert len(sleep.asked) == 2
        assert stats.counts == Counter({ResultStatus.GAVE_UP: 1})
        assert stats.stop_reason is None


async def test_retries_over_the_budget_are_slowed_to_the_longest_backoff() -> None:
    """With a tiny budget (10 retries in the window are always allowed: 1 a second over
    10 s; the test runs within one window) later retries still happen, but each waits between
    half and all of the longest backoff.

    12 pairs failing twice each make 24 overloads: under the 25 in a row that open the
    region's breaker, whose pauses are real time."""
    tasks = [make_task(n) for n in range(12)]
    fake = FakeReplicator({t.checkpoint_item_id: [http_error(503)] * 2 for t in tasks})
    sleep = SleepLog()
    stats, _, _ = await run_pool(
        fake,
        tasks,
        pool_settings=settings(retry_budget_percent=1.0, retry_budget_min_per_s=1.0),
        sleep=sleep,
    )
    assert stats.counts == Counter({ResultStatus.REPLICATED: 12})
    assert len(sleep.asked) == stats.retries == 24
    normal = [s for s in sleep.asked if s < CAP / 2]
    slowed = [s for s in sleep.asked if s >= CAP / 2]
    assert all(s <= CAP for s in slowed)
    # Checked before each backoff, counted when sent: pairs backing off together may
    # overshoot the budget by what is in flight (per_region - 1 here).
    assert 10 <= len(normal) <= 10 + 3


# -- final answers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "status", "code"),
    [
        ("error item", 400, "CSBS.4000"),
        ("unknown item", 404, "CSBS.3001"),
        ("region not capable", 400, "BackupService.1005"),
    ],
)
async def test_final_4xx_is_failed_at_once(
    make_simulator: MakeSimulator, case: str, status: int, code: str
) -> None:
    async with make_simulator(items=80) as sim, sim_client(sim) as c:
        good = fresh_items(sim)[0]
        if case == "error item":
            task = task_for(sim, fresh_items(sim, status="error")[0])
        elif case == "unknown item":
            task = ReplicationTask(
                "00000000-0000-4000-8000-000000000000",
                good.project_id,
                "cn-east-2",
                sim.state.destination_projects["cn-east-2"],
            )
        else:
            task = ReplicationTask(
                good.id, good.project_id, "cn-north-4", sim.state.destination_projects["cn-north-4"]
            )
        sleep = SleepLog()
        _, recorder, _ = await run_pool(c, [task], sleep=sleep)
        outcome = recorder.results[task.key]
        assert outcome.status is ResultStatus.FAILED
        assert (outcome.http_status, outcome.error_code, outcome.attempts) == (status, code, 1)
        assert sleep.asked == []
        assert sim.counters.requests_for(REPLICATE, status) == 1


@pytest.mark.parametrize("status", [400, 404, 409, 413, 422])
async def test_other_4xx_are_not_retried(status: int) -> None:
    fake = FakeReplicator({"item-0000": [http_error(status)]})
    sleep = SleepLog()
    _, recorder, _ = await run_pool(fake, [make_task(0)], sleep=sleep)
    outcome = recorder.results[make_task(0).key]
    assert (outcome.status, outcome.http_status, outcome.attempts) == (
        ResultStatus.FAILED,
        status,
        1,
    )
    assert sleep.asked == []


async def test_already_replicated_looks_up_the_existing_record(
    make_simulator: MakeSimulator,
) -> None:
    async with make_simulator(items=40) as sim, sim_client(sim) as c:
        task = task_for(sim, fresh_items(sim)[0])
        await run_pool(c, [task])
        first = sim.state.latest_record(task.checkpoint_item_id, task.destination_region)
        assert first is not None
        _, recorder, _ = await run_pool(c, [task])
        outcome = recorder.results[task.key]
        assert outcome.status is ResultStatus.ALREADY_REPLICATED
        assert outcome.replication_record_id == first.id
        assert (outcome.http_status, outcome.error_code) == (400, "BackupService.1009")
        assert sim.counters.replications[(task.checkpoint_item_id, task.destination_region)] == 1
        assert sim.counters.duplicates[(task.checkpoint_item_id, task.destination_region)] == 1


async def test_already_replicated_lookup_still_happens_after_a_stop() -> None:
    """The refusal was answered before the stop: finishing it (the id lookup) is not new work."""
    task = make_task(0)
    fake = FakeReplicator()
    fake.applied[task.key] = "rec-earlier"
    recorder = FakeRecorder()
    pool = Pool(fake, recorder, settings(), sleep=SleepLog())
    fake.on_replicate = lambda _: pool.request_stop(StopReason.SIGNAL)
    stats = await pool.run([WorkItem(task)], [task.destination_region])
    assert stats.stop_reason == "signal"
    outcome = recorder.results[task.key]
    assert (outcome.status, outcome.replication_record_id) == (
        ResultStatus.ALREADY_REPLICATED,
        "rec-earlier",
    )


class _LookupFails(FakeReplicator):
    async def find_replication(self, task: ReplicationTask) -> str | None:
        async with self._request(task):
            self.lookups[task.key] += 1
            raise http_error(500, "BackupService.6301", "internal error")


async def test_a_refusal_whose_lookup_fails_is_already_replicated_without_an_id() -> None:
    """The look-up is best effort: the pair is done (the service holds a replica), its id is
    just not known; the failed look-up is logged and not retried."""
    task = make_task(0)
    fake = _LookupFails()
    fake.applied[task.key] = "rec-earlier"
    recorder = FakeRecorder()
    with capture_logs() as logs:
        stats = await Pool(fake, recorder, settings(), sleep=SleepLog()).run(
            [WorkItem(task)], [task.destination_region]
        )
    outcome = recorder.results[task.key]
    assert (outcome.status, outcome.replication_record_id) == (
        ResultStatus.ALREADY_REPLICATED,
        None,
    )
    assert (fake.sent[task.key], fake.lookups[task.key]) == (1, 1)
    assert stats.requests == 2
    (failed,) = [e for e in logs if e["event"] == "replicate.lookup_failed"]
    assert failed["item"] == task.checkpoint_item_id
    assert "BackupService.6301" in failed["error"]


# -- unknown outcomes ---------------------------------------------------------------------------


async def test_apply_then_drop_is_reconciled_never_resent(make_simulator: MakeSimulator) -> None:
    async with make_simulator(items=40, p_apply_drop=1.0) as sim, sim_client(sim) as c:
        task = task_for(sim, fresh_items(sim)[0])
        sleep = SleepLog(then=lambda: sim.update_faults(p_apply_drop=0.0))
        _, recorder, _ = await run_pool(c, [task], sleep=sleep)
        outcome = recorder.results[task.key]
        record = sim.state.latest_record(task.checkpoint_item_id, task.destination_region)
        assert record is not None
        assert outcome.status is ResultStatus.REPLICATED
        assert outcome.replication_record_id == record.id
        assert outcome.attempts == 1  # the reconcile found it: no second POST
        assert sim.counters.requests_for(REPLICATE, "dropped") == 1
        assert sim.counters.requests_for(REPLICATE, 200) == 0
        assert sim.counters.requests_for(GET_ITEM, 200) == 1
        assert sim.counters.duplicates.total() == 0
        assert sim.counters.replications.total() == 1


async def test_drop_before_apply_is_reconciled_then_resent(make_simulator: MakeSimulator) -> None:
    async with make_simulator(items=40, p_drop=1.0) as sim, sim_client(sim) as c:
        task = task_for(sim, fresh_items(sim)[0])
        sleep = SleepLog(then=lambda: sim.update_faults(p_drop=0.0))
        _, recorder, _ = await run_pool(c, [task], sleep=sleep)
        outcome = recorder.results[task.key]
        assert outcome.status is ResultStatus.REPLICATED
        assert outcome.attempts == 2
        # Asked first (found nothing), then sent again.
        assert sim.counters.requests_for(GET_ITEM, 200) == 1
        assert sim.counters.requests_for(REPLICATE, "dropped") == 1
        assert sim.counters.requests_for(REPLICATE, 200) == 1
        assert sim.counters.replications.total() == 1


async def test_reconcile_that_fails_is_retried_before_any_resend() -> None:
    """A lookup that itself fails transiently is asked again; the POST is not re-sent."""

    class FlakyLookup(FakeReplicator):
        failures = 2

        async def find_replication(self, task: ReplicationTask) -> str | None:
            if self.failures:
                self.failures -= 1
                raise http_error(503)
            return await super().find_replication(task)

    fake = FlakyLookup({"item-0000": [ApplyThenDrop]})
    _, recorder, _ = await run_pool(fake, [make_task(0)])
    outcome = recorder.results[make_task(0).key]
    assert (outcome.status, outcome.replication_record_id) == (
        ResultStatus.REPLICATED,
        "rec-item-0000",
    )
    assert fake.sent[make_task(0).key] == 1


async def test_work_marked_unknown_is_reconciled_first() -> None:
    """A pair the ledger left with an attempt and no result is asked about before sending."""
    done, open_ = make_task(0), make_task(1)
    fake = FakeReplicator()
    fake.applied[done.key] = "rec-earlier"
    work = [WorkItem(done, reconcile_first=True), WorkItem(open_, reconcile_first=True)]
    _, recorder, _ = await run_pool(fake, [done, open_], work=work)
    assert recorder.results[done.key].replication_record_id == "rec-earlier"
    assert fake.sent[done.key] == 0
    assert recorder.results[open_.key].status is ResultStatus.REPLICATED
    assert fake.sent[open_.key] == 1
    assert fake.lookups[open_.key] == 1


# -- limits -------------------------------------------------------------------------------------


async def test_global_and_per_region_limits_are_never_exceeded() -> None:
    regions = ("cn-east-2", "cn-south-1", "cn-east-3")
    tasks = [make_task(n, regions[n % 3]) for n in range(90)]
    # Some pairs are already replicated: their lookups count as requests in flight too.
    fake = FakeReplicator(delay=0.005)
    for t in tasks[::5]:
        fake.applied[t.key] = "rec-old"
    stats, recorder, _ = await run_pool(
        fake, tasks, pool_settings=settings(concurrency=5, per_region=3, adaptive=False)
    )
    assert len(recorder.results) == 90
    assert fake.max_in_flight == 5  # reached, never passed
    assert max(fake.max_in_flight_region.values()) <= 3
    assert stats.counts[ResultStatus.ALREADY_REPLICATED] == 18


async def test_per_region_limit_when_it_is_the_tighter_one() -> None:
    tasks = [make_task(n, ("cn-east-2", "cn-south-1")[n % 2]) for n in range(40)]
    fake = FakeReplicator(delay=0.002)
    await run_pool(fake, tasks, pool_settings=settings(concurrency=50, per_region=2))
    assert fake.max_in_flight_region == Counter({"cn-east-2": 2, "cn-south-1": 2})
    assert fake.max_in_flight <= 4


async def test_rate_limit_spaces_requests() -> None:
    rate, n = 400.0, 30
    fake = FakeReplicator()
    tasks = [make_task(i, ("cn-east-2", "cn-south-1")[i % 2]) for i in range(n)]
    start = anyio.current_time()
    await run_pool(fake, tasks, pool_settings=settings(concurrency=16, per_region=8, rate=rate))
    times = sorted(fake.started_at)
    # The i-th request cannot start before its slot: start + i / rate.
    for i, at in enumerate(times):
        assert at >= start + i / rate - 1e-3, (i, at - start)


async def test_rate_limiter_slots_on_a_fake_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    asked: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        asked.append(seconds)
        now[0] += seconds

    monkeypatch.setattr(anyio, "sleep", fake_sleep)
    limiter = RateLimiter(10.0, lambda: now[0])
    admitted = []
    for _ in range(5):
        await limiter.wait()
        admitted.append(now[0])
    assert admitted == pytest.approx([100.0, 100.1, 100.2, 100.3, 100.4])
    now[0] += 5.0  # after an idle spell: admitted at once, but no burst is saved up
    await limiter.wait()
    idle_end = now[0]
    await limiter.wait()
    assert now[0] == pytest.approx(idle_end + 0.1)
    assert asked == pytest.approx([0.1] * 5)


# -- stopping -----------------------------------------------------------------------------------


async def test_failure_threshold_stops_the_run() -> None:
    tasks = [make_task(n) for n in range(200)]
    fake = FakeReplicator({t.checkpoint_item_id: [http_error(400)] for t in tasks[::3]})
    fake.scripts.update({t.checkpoint_item_id: [http_error(400)] for t in tasks[1::3]})
    stats, recorder, _ = await run_pool(
        fake,
        tasks,
        pool_settings=settings(failure_min_results=20, failure_percent=50.0, per_region=1),
    )
    assert stats.stop_reason == "threshold"
    assert 20 <= stats.finished < 200
    # Pairs not started have no attempt; every attempt has its result.
    assert {k for k, _ in recorder.attempts} == set(recorder.results)


async def test_503_and_429_never_count_toward_the_threshold() -> None:
    """Two thirds of the pairs give up on 503/429 (a successful pair between them keeps the
    breaker, whose pauses are real time, closed); that is no reason to stop."""
    tasks = [make_task(n) for n in range(60)]
    scripts: dict[str, list[Step]] = {
        t.checkpoint_item_id: [http_error((503, 429)[n % 3])] * 9
        for n, t in enumerate(tasks)
        if n % 3 != 2
    }
    fake = FakeReplicator(scripts)
    policy = RetryPolicy(max_attempts=2, base_delay_s=BASE, max_delay_s=CAP)
    stats, _, _ = await run_pool(
        fake,
        tasks,
        pool_settings=settings(
            failure_min_results=10, failure_percent=10.0, retry=policy, per_region=1
        ),
    )
    assert stats.stop_reason is None
    assert stats.counts == Counter({ResultStatus.GAVE_UP: 40, ResultStatus.REPLICATED: 20})


async def test_max_duration_stops_with_reason_deadline() -> None:
    tasks = [make_task(n) for n in range(2000)]
    fake = FakeReplicator(delay=0.005)
    stats, recorder, _ = await run_pool(
        fake, tasks, pool_settings=settings(per_region=2, max_duration=0.05)
    )
    assert stats.stop_reason == "deadline"
    assert 0 < stats.finished < 2000
    assert {k for k, _ in recorder.attempts} == set(recorder.results)


async def test_refused_credentials_stop_the_run() -> None:
    tasks = [make_task(n) for n in range(100)]
    refused = AuthError("credentials refused: HTTP 401", http_status=401)
    fake = FakeReplicator({t.checkpoint_item_id: [refused] * 3 for t in tasks}, delay=0.001)
    stats, recorder, _ = await run_pool(fake, tasks, pool_settings=settings(per_region=8))
    assert stats.stop_reason == "auth"
    assert stats.auth_error is not None
    assert "401" in stats.auth_error
    # Before any answer only 4 requests go out: fewer bad signatures than lock a key (5).
    assert 1 <= fake.sent.total() <= 4
    assert {o.status for o in recorder.results.values()} == {ResultStatus.GAVE_UP}
    # The refused ones, and those whose attempt line was written ahead but never sent.
    refused_pairs = {k for k, o in recorder.results.items() if o.attempts}
    assert refused_pairs == set(fake.sent)
    assert {k for k, _ in recorder.attempts} == set(recorder.results)
    assert all_not_sent(o for k, o in recorder.results.items() if k not in refused_pairs)


async def test_refused_credentials_later_in_the_run_stop_it_too() -> None:
    """Revoked mid-run: requests already in flight finish; nothing new is sent."""
    tasks = [make_task(n) for n in range(100)]
    refused = AuthError("credentials refused: HTTP 401", http_status=401)
    fake = FakeReplicator({t.checkpoint_item_id: [refused] for t in tasks[10:]}, delay=0.001)
    stats, recorder, _ = await run_pool(fake, tasks, pool_settings=settings(per_region=4))
    assert stats.stop_reason == "auth"
    refusals = fake.sent.total() - stats.counts[ResultStatus.REPLICATED]
    assert 1 <= refusals <= 4  # at most what was in flight
    assert {k for k, _ in recorder.attempts} == set(recorder.results)


async def test_few_requests_go_out_before_the_credentials_are_verified() -> None:
    tasks = [make_task(n, ("cn-east-2", "cn-south-1")[n % 2]) for n in range(24)]
    fake = FakeReplicator(delay=0.02)  # long enough for every probe to start first
    before_first_answer: list[int] = []

    def arrived(_: ReplicationTask) -> None:
        if not fake.applied:
            before_first_answer.append(fake.in_flight + 1)

    fake.on_replicate = arrived
    await run_pool(fake, tasks)
    assert max(before_first_answer) == 4
    assert fake.max_in_flight == 8  # then the limits are the pool's own


async def test_probes_that_get_no_answer_let_others_probe() -> None:
    """Connections refused say nothing about credentials: the next probes go, then the rest."""
    refused = TransportError("cannot connect", maybe_applied=False)
    tasks = [make_task(n) for n in range(12)]
    fake = FakeReplicator({t.checkpoint_item_id: [refused] for t in tasks[:6]})
    stats, _, _ = await run_pool(fake, tasks)
    assert stats.counts == Counter({ResultStatus.REPLICATED: 12})


async def test_a_service_no_request_can_connect_to_stops_the_run() -> None:
    """Before any answer, connections refused for ``unreachable_after_s`` (0 here) stop the
    run: a wrong endpoint is not retried pair by pair for the whole retry time."""
    refused = TransportError("POST /x: cannot connect (refused)", maybe_applied=False)
    tasks = [make_task(n) for n in range(20)]
    fake = FakeReplicator({t.checkpoint_item_id: [refused] * 50 for t in tasks})
    recorder = FakeRecorder()
    pool = Pool(fake, recorder, settings(unreachable_after_s=0.0), sleep=SleepLog())
    with capture_logs() as logs:
        stats = await pool.run([WorkItem(t) for t in tasks], [tasks[0].destination_region])
    assert (stats.stop_reason, stats.unreachable) == ("unreachable", str(refused))
    assert exit_code_for(stats, rejected=0) == ExitCode.GAVE_UP
    assert stats.requests <= 4  # the probes, no more
    assert {o.status for o in recorder.results.values()} == {ResultStatus.GAVE_UP}
    (warning,) = [e for e in logs if e["event"] == "service.unreachable"]
    assert warning["error"] == str(refused)
    # One explanation for all: no warning per pair.
    assert not [e for e in logs if e["event"] == "replicate.gave_up"]


async def test_connections_refused_after_an_answer_are_retried_as_before() -> None:
    """Once the service has answered, refused connections are an outage to ride out."""
    refused = TransportError("cannot connect", maybe_applied=False)
    tasks = [make_task(n) for n in range(6)]
    # One at a time: item-0000 (no script) is answered first, then come the refusals.
    fake = FakeReplicator({t.checkpoint_item_id: [refused, refused] for t in tasks[1:]})
    only_one = settings(concurrency=1, per_region=1, per_region_floor=1, unreachable_after_s=0.0)
    stats, _, _ = await run_pool(fake, tasks, pool_settings=only_one)
    assert stats.stop_reason is None
    assert stats.counts == Counter({ResultStatus.REPLICATED: 6})


async def test_a_service_that_answers_within_the_patience_is_not_given_up() -> None:
    refused = TransportError("cannot connect", maybe_applied=False)
    tasks = [make_task(n) for n in range(6)]
    fake = FakeReplicator({t.checkpoint_item_id: [refused] for t in tasks})
    with capture_logs() as logs:
        stats, _, _ = await run_pool(fake, tasks)  # the default patience: 60 s
    assert stats.stop_reason is None
    assert stats.counts == Counter({ResultStatus.REPLICATED: 6})
    assert [e["event"] for e in logs].count("service.unreachable") == 1


async def test_unreachable_after_none_leaves_refusals_to_the_retries() -> None:
    """``--unreachable-after 0``: each pair retries and gives up on its own, as before."""
    refused = TransportError("cannot connect", maybe_applied=False)
    tasks = [make_task(n) for n in range(5)]
    fake = FakeReplicator({t.checkpoint_item_id: [refused] * 50 for t in tasks})
    retry = RetryPolicy(max_attempts=3, base_delay_s=BASE, max_delay_s=CAP)
    patient = settings(unreachable_after_s=None, retry=retry)
    stats, _, _ = await run_pool(fake, tasks, pool_settings=patient)
    assert (stats.stop_reason, stats.unreachable) == (None, None)
    assert stats.counts == Counter({ResultStatus.GAVE_UP: 5})
    assert all(fake.sent[t.key] == 3 for t in tasks)


async def test_a_403_stops_the_run_like_a_401() -> None:
    """A 403 from the service is an AuthError too: it stops, it is not a per-pair failure."""
    fake = FakeReplicator({"item-0000": [http_error(403, "APIGW.0306")]})
    stats, _, _ = await run_pool(fake, [make_task(0), make_task(1)])
    assert stats.stop_reason == "auth"
    assert isinstance(http_error(403), AuthError)
    assert not isinstance(http_error(400), AuthError | TransientApiError)
    assert isinstance(http_error(400), PermanentApiError)


# -- attempt lines written ahead ----------------------------------------------------------------


async def run_with_ledger(
    fake: FakeReplicator, tasks: Sequence[ReplicationTask], path: Path, **changes: object
) -> tuple[PoolStats, Pool]:
    """The pool with the real ledger writer and recorder behind it."""
    async with LedgerWriter(path) as writer:
        pool = Pool(fake, LedgerRecorder(writer, "run-1"), settings(**changes), sleep=SleepLog())
        if fake.on_replicate is None:
            fake.on_replicate = lambda _: None
        stats = await pool.run((WorkItem(t) for t in tasks), ["cn-east-2"])
    return stats, pool


def events(path: Path) -> list[tuple[str, str]]:
    """(event, checkpoint item id) of each attempt and result line, in file order."""
    return events_of(path.read_bytes())


def events_of(data: bytes) -> list[tuple[str, str]]:
    lines = (orjson.loads(raw) for raw in data.splitlines())
    return [(r["event"], r["checkpoint_item_id"]) for r in lines if "checkpoint_item_id" in r]


async def test_each_request_goes_out_after_its_attempt_line_is_fsynced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ledger.jsonl"
    synced = [0]  # the file's size at the last fsync that returned
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        size = os.fstat(fd).st_size
        real_fsync(fd)
        synced[0] = size

    monkeypatch.setattr(os, "fsync", fsync)
    tasks = [make_task(n) for n in range(120)]
    fake = FakeReplicator({t.checkpoint_item_id: [TransientApiError("503")] for t in tasks[::7]})
    not_yet_durable: list[str] = []

    def check(task: ReplicationTask) -> None:
        durable = path.read_bytes()[: synced[0]]
        attempts = [r for e, r in events_of(durable) if e == "attempt"]
        sent_before = fake.sent[task.key]
        if attempts.count(task.checkpoint_item_id) <= sent_before:
            not_yet_durable.append(task.checkpoint_item_id)

    fake.on_replicate = check
    stats, _ = await run_with_ledger(fake, tasks, path, per_region=4, concurrency=4)
    assert stats.counts[ResultStatus.REPLICATED] == len(tasks)
    assert fake.sent.total() == len(tasks) + len(tasks[::7])
    assert not_yet_durable == []


async def test_a_worker_writes_its_next_attempt_line_while_its_request_is_out(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ledger.jsonl"
    tasks = [make_task(n) for n in range(5)]
    await run_with_ledger(FakeReplicator(delay=0.001), tasks, path, per_region=1, concurrency=1)
    ids = [t.checkpoint_item_id for t in tasks]
    # One worker: pair n+1's attempt line comes before pair n's result, never after it.
    expected = [("attempt", ids[0])]
    for this, after in zip(ids, [*ids[1:], None], strict=True):
        expected += [("attempt", after)] if after else []
        expected += [("result", this)]
    assert events(path) == expected


async def test_a_stop_gives_up_as_not_sent_the_pairs_whose_attempt_was_written_ahead(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ledger.jsonl"
    tasks = [make_task(n) for n in range(40)]
    fake = FakeReplicator(delay=0.001)
    holder: list[Pool] = []

    def stop_at_the_ninth(_: ReplicationTask) -> None:
        if fake.sent.total() == 8:  # counted after this hook
            holder[0].request_stop(StopReason.SIGNAL)

    fake.on_replicate = stop_at_the_ninth
    async with LedgerWriter(path) as writer:
        pool = Pool(fake, LedgerRecorder(writer, "run-1"), settings(per_region=4), sleep=SleepLog())
        holder.append(pool)
        stats = await pool.run((WorkItem(t) for t in tasks), ["cn-east-2"])
    assert stats.stop_reason == "signal"
    history = History.load(path)
    # Nothing looks in flight: every attempt line has a result after it.
    assert history.unknown_outcomes() == 0
    attempted = {r for e, r in events(path) if e == "attempt"}
    not_sent = attempted - {item for _, item, _ in fake.sent}
    assert not_sent  # some lines were written ahead of requests that never went out
    for task in tasks:
        if task.checkpoint_item_id in not_sent:
            assert history.status(task.key) is ResultStatus.GAVE_UP  # resume sends them


async def test_a_stop_between_retries_records_the_last_answer() -> None:
    """A pair waiting to retry when the run stops got an answer: it ends gave_up with that
    answer, not in flight. Unknown only if that answer may have been applied."""
    refused, cut = make_task(0), make_task(1, "cn-south-1")  # a worker (and queue) each
    fake = FakeReplicator(
        {
            refused.checkpoint_item_id: [http_error(503, "CSBS.9997")] * 3,
            cut.checkpoint_item_id: [TransportError("cut", maybe_applied=True)] * 3,
        }
    )
    holder: list[Pool] = []
    sleep = SleepLog(then=lambda: holder[0].request_stop(StopReason.SIGNAL))
    recorder = FakeRecorder()
    pool = Pool(fake, recorder, settings(per_region=2), sleep=sleep)
    holder.append(pool)
    stats = await pool.run([WorkItem(refused), WorkItem(cut)], ["cn-east-2", "cn-south-1"])
    assert stats.stop_reason == "signal"
    first, second = recorder.results[refused.key], recorder.results[cut.key]
    assert (first.status, first.http_status, first.error_code) == (
        ResultStatus.GAVE_UP,
        503,
        "CSBS.9997",
    )
    assert "stopped while retrying" in (first.error_msg or "")
    assert (first.attempts, first.outcome_unknown) == (1, False)
    assert (second.status, second.attempts, second.outcome_unknown) == (
        ResultStatus.GAVE_UP,
        1,
        True,  # the cut request may have been applied: resume asks first
    )


async def test_the_first_requests_go_out_before_the_whole_plan_is_queued() -> None:
    """With room in every queue the producer never has to wait; it still lets the workers
    start after each batch, instead of reading the whole manifest first."""
    tasks = [make_task(n) for n in range(3000)]
    fed: list[int] = [0]
    at_first_request: list[int] = []

    def work() -> Iterator[WorkItem]:
        for task in tasks:
            fed[0] += 1
            yield WorkItem(task)

    fake = FakeReplicator()
    fake.on_replicate = lambda _: at_first_request.append(fed[0])
    pool = Pool(fake, FakeRecorder(), settings(queue_per_region=4096), sleep=SleepLog())
    stats = await pool.run(work(), ["cn-east-2"])
    assert stats.counts[ResultStatus.REPLICATED] == len(tasks)
    assert at_first_request[0] <= 2 * pool_module._FEED_BATCH


async def test_throttling_is_not_overload_it_never_shrinks_concurrency_nor_opens_a_breaker() -> (
    None
):
    """A 429 says the rate is too high, not the region's concurrency: the region's limit and
    its breaker stay as they were, however many come in a row (the rate controller owns
    them); the same number of 503s shrinks the limit and trips the breaker."""
    tasks = [make_task(n) for n in range(40)]

    async def run_with(status: int) -> PoolStats:
        scripts: dict[str, list[Step]] = {t.checkpoint_item_id: [http_error(status)] for t in tasks}
        pool_settings = settings(per_region=8, concurrency=8)
        stats, _, _ = await run_pool(FakeReplicator(scripts), tasks, pool_settings=pool_settings)
        assert stats.counts == Counter({ResultStatus.REPLICATED: len(tasks)})
        return stats

    throttled = await run_with(429)
    assert [limit for _, limit in throttled.limits["cn-east-2"]] == [8]
    assert throttled.breaker_trips["cn-east-2"] == 0
    overloaded = await run_with(503)
    assert min(limit for _, limit in overloaded.limits["cn-east-2"]) < 8


async def test_a_paced_pool_learns_and_reports_the_rate_per_project() -> None:
    """With pacing on, each (endpoint, project) gets its own controller, fed every answer."""
    tasks = [make_task(n) for n in range(30)]
    scripts: dict[str, list[Step]] = {
        t.checkpoint_item_id: [http_error(429, "APIG.0308", "over ratelimit, time:1 second")]
        for t in tasks[:10]
    }
    # (a fake is no token bucket: a high floor keeps what it teaches from slowing the test)
    pool_settings = settings(pace=PaceSettings(start_rate=1e4, floor=1e3))
    stats, _, _ = await run_pool(FakeReplicator(scripts), tasks, pool_settings=pool_settings)
    assert stats.counts == Counter({ResultStatus.REPLICATED: len(tasks)})
    ((key, pace),) = stats.pace.items()
    assert key == f"default/{PROJECT}"
    assert pace["throttled"] == 10
    assert pace["accepted"] == len(tasks)
    assert pace["limit"] is not None, pace
