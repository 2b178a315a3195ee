"""The worker pool: feeds work items to per-region workers under every limit, retries, stops.

Shape (structured concurrency, no hand-managed tasks)::

    run()
    └── task group
        ├── producer: plan's work items -> one bounded stream per destination region
        ├── deadline watcher (--max-duration), grace watcher (after a stop request)
        └── per region: `ceiling` workers, each attempt admitted by
              pace (learned rate of its endpoint and project, see engine/pace.py) ->
              region gate (breaker + adaptive limit) -> global limiter -> rate limiter

The pace comes first and holds nothing while it waits: a project throttled to a slow rate
must not hold concurrency slots that another project's requests could use.

Until a first answer shows that the credentials work, only a few requests go out (refused
credentials then cost a few 401s, not one per worker: the service locks an access key after
five bad signatures). The id lookup after an "already replicated" refusal and the reconcile
before a re-send are requests too: they take the same limits.

Stopping is two-staged. :meth:`Pool.request_stop` (first signal, deadline, failure threshold,
revoked credentials) stops feeding and starting pairs; requests already sent finish, bounded
by the grace period. :meth:`Pool.cancel` (second signal, grace expired) cancels at once: pairs
then in flight have a durable ``attempt`` and no result, so resume reconciles them. Either
way, a pair whose attempt line a worker wrote ahead (see :class:`_Lane`) but never sent gets
a ``gave_up`` result marked as not sent, and a pair waiting to retry gets ``gave_up`` with its
last answer.

The pool knows neither HTTP nor the ledger: it talks to a :class:`Replicator` and a
:class:`Recorder`.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import anyio
import structlog
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from orchestrator.engine.limiters import RateLimiter, Slots, Stopped
from orchestrator.engine.overload import GateSettings, RegionGate
from orchestrator.engine.pace import (
    PaceKey,
    Pacer,
    PaceSettings,
    RateController,
    is_throttle,
    key_of,
    throttle_window,
)
from orchestrator.engine.pace_gate import PaceGate
from orchestrator.engine.progress import NullProgress, Progress
from orchestrator.engine.retry import RetryBudget, RetryPolicy, retrying
from orchestrator.engine.stop_rules import FailureThreshold, Unreachable
from orchestrator.errors import (
    AlreadyReplicatedError,
    ApiError,
    AuthError,
    PermanentApiError,
    TransientApiError,
    TransportError,
)
from orchestrator.ledger.format import StopReason
from orchestrator.models import Durable, Outcome, PairKey, ReplicationTask, ResultStatus, WorkItem

if TYPE_CHECKING:
    from tenacity import RetryCallState

__all__ = ["FindsRecords", "Pool", "PoolSettings", "PoolStats", "Recorder", "Replicator"]

log = structlog.get_logger("orchestrator.engine.pool")


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


@dataclass(slots=True)
class PoolStats:
    counts: Counter[str] = field(default_factory=Counter)
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


#: Requests in flight before any answer has shown that the credentials work. The service locks
#: an access key after 5 bad signatures in a row, for everyone using it, for 5 minutes.
_PROBES = 4


_NOT_SENT = "not sent: the run stopped before this pair's request went out"
_FEED_BATCH = 256  # pairs queued between the producer's turns


class _RegionDown(Exception):
    """Internal: the region's breaker stayed open longer than a pair may wait; not sent."""


class Pool:
    """Replicate every work item once, under the limits, recording each outcome."""

    def __init__(
        self,
        client: Replicator,
        recorder: Recorder,
        settings: PoolSettings,
        *,
        progress: Progress | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        rng: random.Random | None = None,
        first_attempts: Mapping[PairKey, float] | None = None,
    ) -> None:
        self._client = client
        # When a pair reconciled from an earlier run was first attempted (epoch seconds).
        self._first_attempts: Mapping[PairKey, float] = first_attempts or {}
        self._recorder = recorder
        self._settings = settings
        self._progress: Progress = progress or NullProgress()
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._global = Slots(settings.concurrency)
        self._rate = RateLimiter(settings.rate, anyio.current_time)
        self._pacer = (
            None
            if settings.pace is None
            else Pacer(settings.pace, anyio.current_time, initial=settings.initial_rates)
        )
        self._pace_gates: dict[PaceKey, PaceGate] = {}
        self._budget = RetryBudget(
            settings.retry_budget_percent / 100.0, min_per_s=settings.retry_budget_min_per_s
        )
        self._gates: dict[str, RegionGate] = {}
        self._stop = anyio.Event()
        self._waiting: set[anyio.CancelScope] = set()
        self._scope: anyio.CancelScope | None = None
        # Until an answer shows that the credentials work, at most _PROBES requests are out:
        # refused credentials then cost a few 401s, not one per worker.
        self._verified = anyio.Event()
        self._probes = 0
        self._probe_freed = anyio.Event()
        self._threshold = FailureThreshold(settings.failure_min_results, settings.failure_percent)
        self._unreachable = Unreachable(settings.unreachable_after_s, anyio.current_time)
        self.stats = PoolStats()

    # -- control -------------------------------------------------------------------------

    def request_stop(self, reason: StopReason) -> None:
        """Stop feeding and starting pairs; let requests in flight finish (bounded by grace)."""
        if self._stop.is_set():
            return
        self.stats.stop_reason = reason
        self._stop.set()
        for scope in list(self._waiting):
            scope.cancel()
        self._global.stop_waiting()
        log.warning("run.stopping", reason=reason, grace_s=self._settings.grace_period)

    def cancel(self) -> None:
        """Cancel everything now; in-flight pairs stay unknown and are reconciled on resume."""
        self.request_stop(self.stats.stop_reason or StopReason.SIGNAL)
        if self._scope is not None:
            self._scope.cancel()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def pace_summary(self) -> dict[str, dict[str, float | int | None]]:
        """The learned pace per ``endpoint/project`` so far (empty when not pacing)."""
        return {} if self._pacer is None else self._pacer.summary()

    # -- the run ---------------------------------------------------------------------------

    async def run(self, work: Iterable[WorkItem], regions: Iterable[str]) -> PoolStats:
        streams = {region: self._open_region(region) for region in regions}
        try:
            with anyio.CancelScope() as self._scope:
                async with anyio.create_task_group() as watchers:
                    watchers.start_soon(self._watch_deadline)
                    async with anyio.create_task_group() as tg:
                        for region, (_, receive) in streams.items():
                            for _ in range(self._settings.per_region):
                                tg.start_soon(self._worker, region, receive.clone())
                            receive.close()
                        tg.start_soon(self._produce, work, {r: s for r, (s, _) in streams.items()})
                    watchers.cancel_scope.cancel()
        finally:
            for region, gate in self._gates.items():
                self.stats.limits[region] = gate.history
                self.stats.breaker_trips[region] = gate.breaker_trips
            self.stats.pace = self.pace_summary()
        return self.stats

    def _open_region(
        self, region: str
    ) -> tuple[MemoryObjectSendStream[WorkItem], MemoryObjectReceiveStream[WorkItem]]:
        s = self._settings
        gate_settings = GateSettings(
            ceiling=s.per_region,
            floor=min(s.per_region_floor, s.per_region),
            initial=s.initial_limits.get(region),
            adaptive=s.adaptive,
        )
        self._gates[region] = RegionGate(region, gate_settings, clock=anyio.current_time)
        return anyio.create_memory_object_stream[WorkItem](s.queue_per_region)

    async def _produce(
        self, work: Iterable[WorkItem], sends: dict[str, MemoryObjectSendStream[WorkItem]]
    ) -> None:
        try:
            for count, item in enumerate(work, 1):
                if self._stop.is_set():
                    break
                send = sends[item.task.destination_region]
                try:
                    send.send_nowait(item)
                except anyio.WouldBlock:
                    await self._wait_or_stop(send.send(item))
                else:
                    if count % _FEED_BATCH == 0:
                        # Queues with room never make the producer wait: without this it
                        # would read the whole manifest (thousands of rows) before the
                        # workers send their first requests.
                        await anyio.lowlevel.checkpoint()
        except Stopped:
            pass
        finally:
            for send in sends.values():
                send.close()

    async def _watch_deadline(self) -> None:
        if self._settings.max_duration > 0:
            with anyio.move_on_after(self._settings.max_duration):
                await self._stop.wait()
            self.request_stop(StopReason.DEADLINE)
        await self._stop.wait()
        await anyio.sleep(self._settings.grace_period)
        log.warning("run.grace_expired", grace_s=self._settings.grace_period)
        self.cancel()

    async def _worker(self, region: str, receive: MemoryObjectReceiveStream[WorkItem]) -> None:
        gate = self._gates[region]
        lane = _Lane(receive, self._recorder)
        attempt: _Attempt | None = None
        with receive:
            try:
                while (attempt := await lane.next()) is not None:
                    if self._stop.is_set():
                        break
                    started = time.time()
                    try:
                        outcome = await self._replicate(attempt, gate)
                    except Stopped:
                        break
                    self._finish(attempt, outcome, started)
            finally:
                self._withdraw(attempt, lane.ahead)

    def _withdraw(self, *attempts: _Attempt | None) -> None:
        """Give up, as not sent, the pairs whose attempt line was written ahead but whose
        request never went out: without a result after it, that line would make the pair
        look in flight, and resume would ask the service about it before sending it."""
        for attempt in attempts:
            if attempt is not None and attempt.ahead is not None:
                outcome = Outcome(ResultStatus.GAVE_UP, error_msg=_NOT_SENT, attempts=attempt.sent)
                self._finish(attempt, outcome, time.time(), quiet=True)

    def _finish(
        self, attempt: _Attempt, outcome: Outcome, started: float, *, quiet: bool = False
    ) -> None:
        attempt.ahead = None  # the pair has its result: nothing is left to withdraw
        if outcome.status is ResultStatus.GAVE_UP and self._unreachable.gave_up():
            self._stop_unreachable()  # a pair ran out of time (or patience) without connecting
        task = attempt.task
        self._recorder.result(task, outcome, started)
        if (
            not quiet
            and outcome.status in (ResultStatus.FAILED, ResultStatus.GAVE_UP)
            # A service never reached explains every pair at once (service.unreachable).
            and self.stats.stop_reason != StopReason.UNREACHABLE
        ):
            log.warning(
                f"replicate.{outcome.status}",
                item=task.checkpoint_item_id,
                region=task.destination_region,
                attempts=outcome.attempts,
                http_status=outcome.http_status,
                error_code=outcome.error_code,
                error=outcome.error_msg,
            )
        self.stats.counts[outcome.status] += 1
        # A pair the stop withdrew before it was sent did not fail: progress says so.
        shown = "not_sent" if outcome.error_msg is _NOT_SENT else outcome.status
        self._progress.advance(task.destination_region, shown)
        self._check_threshold()

    def _check_threshold(self) -> None:
        if self._threshold.check(self.stats.counts) is not None:
            self.request_stop(StopReason.THRESHOLD)

    # -- one pair --------------------------------------------------------------------------

    async def _replicate(self, attempt: _Attempt, gate: RegionGate) -> Outcome:
        try:
            return await self._with_retries(attempt, gate)
        except AlreadyReplicatedError as exc:
            record_id = await self._lookup_existing(attempt.task, gate)
            return _outcome(ResultStatus.ALREADY_REPLICATED, exc, attempt.sent, record_id)
        except AuthError as exc:
            # Not this pair's fault: it stays retryable, and the whole run stops.
            self.stats.auth_error = str(exc)
            self.request_stop(StopReason.AUTH)
            return _outcome(ResultStatus.GAVE_UP, exc, attempt.sent, unknown=attempt.reconcile)
        except PermanentApiError as exc:
            return await self._final_refusal(attempt, gate, exc)
        except TransientApiError as exc:
            return _outcome(ResultStatus.GAVE_UP, exc, attempt.sent, unknown=attempt.reconcile)
        except (Stopped, _RegionDown) as exc:
            return self._unfinished(attempt, gate, exc)

    async def _final_refusal(
        self, attempt: _Attempt, gate: RegionGate, exc: PermanentApiError
    ) -> Outcome:
        """A final refusal. A 400 the error table does not know may be the service refusing
        a duplicate in words we have not met ("A replica already exists in the destination
        region"): before recording ``failed``, ask the service's own records. Only this
        error path pays for the lookup; a 200 never does."""
        if exc.http_status == 400 and exc.unrecognised:
            record_id = await self._lookup_existing(attempt.task, gate)
            if record_id is not None:
                log.info(
                    "replicate.refusal_was_duplicate",
                    item=attempt.task.checkpoint_item_id,
                    region=attempt.task.destination_region,
                    error_code=exc.error_code,
                    replication_record_id=record_id,
                )
                return _outcome(ResultStatus.ALREADY_REPLICATED, exc, attempt.sent, record_id)
        return _outcome(ResultStatus.FAILED, exc, attempt.sent)

    def _unfinished(self, attempt: _Attempt, gate: RegionGate, exc: Exception) -> Outcome:
        """The outcome of a pair whose retries were cut short; re-raises :class:`Stopped`
        when the pair has no answer to record yet (withdrawn if its line was written ahead)."""
        if isinstance(exc, _RegionDown):
            return Outcome(
                ResultStatus.GAVE_UP,
                error_msg=f"{gate.region}: circuit breaker open for more than "
                f"{self._settings.retry.max_elapsed_s:g} s (the retry time); not sent",
                attempts=attempt.sent,
                outcome_unknown=attempt.reconcile,
            )
        err = attempt.last_error
        if err is None:
            raise exc
        # Stopped between retries: the last answer is known, so the pair is not in flight.
        return Outcome(
            ResultStatus.GAVE_UP,
            http_status=err.http_status,
            error_code=err.error_code,
            error_msg=f"the run stopped while retrying; last error: {err.error_msg or err}",
            attempts=attempt.sent,
            outcome_unknown=attempt.reconcile,
        )

    async def _with_retries(self, attempt: _Attempt, gate: RegionGate) -> Outcome:
        # Most first attempts succeed, and a retry controller costs more than the rest of a
        # request's bookkeeping: the first attempt goes without one. Its transient failure is
        # handed to a controller as that controller's attempt 1, started when it really was.
        started = time.monotonic()
        try:
            return await self._one_try(attempt, gate)
        except TransientApiError as exc:
            return await self._retry(attempt, gate, exc, started)

    async def _retry(
        self, attempt: _Attempt, gate: RegionGate, first: TransientApiError, started: float
    ) -> Outcome:
        controller = retrying(
            self._settings.retry,
            sleep=self._backoff_sleep,
            rng=self._rng,
            budget=self._budget,
            before_sleep=lambda state: self._note_retry(attempt, state),
            started=started,
        )
        replay: TransientApiError | None = first
        async for try_ in controller:
            with try_:
                if replay is not None:
                    failed, replay = replay, None
                    raise failed
                return await self._one_try(attempt, gate)
        raise AssertionError("unreachable: the retry controller re-raises")  # pragma: no cover

    def _note_retry(self, attempt: _Attempt, state: RetryCallState) -> None:
        task = attempt.task
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, TransientApiError):
            attempt.last_error = exc
        # Debug: a storm retries a third of all requests; the progress events count them.
        log.debug(
            "replicate.retry",
            item=task.checkpoint_item_id,
            region=task.destination_region,
            attempt=state.attempt_number,
            wait_s=round(state.upcoming_sleep, 3),
            http_status=getattr(exc, "http_status", None),
            error_code=getattr(exc, "error_code", None),
            error=str(exc),
        )

    async def _backoff_sleep(self, seconds: float) -> None:
        if self._sleep is not None:
            await self._sleep(seconds)
        else:
            with anyio.move_on_after(seconds):
                await self._stop.wait()
        if self._stop.is_set():
            raise Stopped

    async def _one_try(self, attempt: _Attempt, gate: RegionGate) -> Outcome:
        probe = await self._take_probe()
        answered = False
        try:
            await self._admit(gate, attempt.task)
            try:
                outcome = await self._send(attempt, gate)
            finally:
                self._global.release()
                gate.release()
        except AuthError:
            self.request_stop(StopReason.AUTH)  # before the probes waiting behind this one go
            raise
        except TransportError as exc:
            if not exc.maybe_applied:
                self._note_no_connection(exc)
            raise  # no answer: it says nothing about the credentials
        except ApiError:
            answered = True
            raise
        else:
            answered = True
            return outcome
        finally:
            if probe:
                self._end_probe(verified=answered)

    def _note_no_connection(self, exc: TransportError) -> None:
        """Before any answer, a service that no request could connect to for
        ``unreachable_after_s`` is misaddressed or down: stop and say so, rather than retry
        every pair in silence for the whole retry time."""
        if self._stop.is_set():
            return
        first = self._unreachable.last_error is None and not self._unreachable.answered
        reason = self._unreachable.refused(exc)
        if first:
            log.warning(
                "service.unreachable",
                error=str(exc),
                stop_after_s=self._settings.unreachable_after_s,
                hint="no answer yet: check the endpoint (--endpoint, --region) and the network",
            )
        if reason is not None:
            self._stop_unreachable()

    def _stop_unreachable(self) -> None:
        if not self._stop.is_set():  # (a stop for another reason keeps its own)
            self.stats.unreachable = str(self._unreachable.last_error)
            self.request_stop(StopReason.UNREACHABLE)

    async def _take_probe(self) -> bool:
        """True if this request is one of the few sent before the credentials are verified;
        False once they are. Waits while ``_PROBES`` are out."""
        while not self._verified.is_set():
            if self._probes < _PROBES:
                self._probes += 1
                return True
            await self._wait_or_stop(self._probe_freed.wait())
        return False

    def _end_probe(self, *, verified: bool) -> None:
        self._probes -= 1
        if verified:
            self._verified.set()
            self._unreachable.answered = True
        self._probe_freed.set()
        self._probe_freed = anyio.Event()

    async def _admit(
        self, gate: RegionGate, task: ReplicationTask, *, stoppable: bool = True
    ) -> None:
        """Wait for the task's pace, then take the region gate, the global limiter and a rate
        slot; a stop ends the wait, unless not ``stoppable`` (a follow-up of a request already
        answered)."""
        if (pacer := self._pacer) is not None:
            pace = self._pace_gate(pacer, task)
            if not pace.try_pass():
                await self._pace_wait(pace, stoppable=stoppable)
        # What is free now is taken without a trip through the event loop (usually all three);
        # only the rest is waited for, in a cancel scope that a stop cancels.
        taken = 0 if stoppable and self._stop.is_set() else self._take_free(gate)
        if taken == 1:
            # The usual wait (more workers than global slots) needs no cancel scope: a stop
            # ends it through the slots themselves.
            try:
                await self._global.take(stoppable=stoppable)
            except BaseException:
                gate.release()
                raise
            taken = 3 if self._rate.take_now() else 2
        if taken == 3:
            return
        held: list[Callable[[], None]] = [gate.release, self._global.release][:taken]
        with anyio.CancelScope() as scope:
            if stoppable:
                self._waiting.add(scope)
                if self._stop.is_set():
                    scope.cancel()
            try:
                if taken < 1:
                    await self._pass_region(gate)
                    held.append(gate.release)
                if taken < 2:
                    await self._global.take(stoppable=stoppable)
                    held.append(self._global.release)
                await self._rate.wait()
                held.clear()
            finally:
                self._waiting.discard(scope)
                for release in reversed(held):
                    release()
        if scope.cancelled_caught:
            raise Stopped

    async def _pace_wait(self, gate: PaceGate, *, stoppable: bool) -> None:
        if stoppable:
            await self._wait_or_stop(gate.wait())
        else:
            await gate.wait()

    def _pace_gate(self, pacer: Pacer, task: ReplicationTask) -> PaceGate:
        key = key_of(task)
        gate = self._pace_gates.get(key)
        if gate is None:
            gate = self._pace_gates[key] = PaceGate(pacer[key])
        return gate

    def _paced(self, task: ReplicationTask) -> RateController | None:
        return None if self._pacer is None else self._pacer[key_of(task)]

    def _tell_pace(self, pace: RateController | None, sent_at: float, exc: ApiError | None) -> None:
        """Feed the answer to the task's rate controller: throttled, or it took a token."""
        if pace is None:
            return
        if exc is None:
            pace.on_answer(sent_at, throttled=False)
            if pace.accepted % 64 == 0:  # (the probe moves it between throttled answers)
                self._progress.set_pace(pace.label, pace.shown_rate)
            return
        if isinstance(exc, TransportError):
            return  # no answer: nothing is known about the bucket
        if _throttled(exc):
            pace.on_answer(sent_at, throttled=True, window_s=throttle_window(exc.error_msg))
            self._progress.set_pace(pace.label, pace.shown_rate)
        else:
            pace.on_answer(sent_at, throttled=False)

    def _take_free(self, gate: RegionGate) -> int:
        """How many of the three, in order (region gate, global limiter, rate slot), were free
        and are now held: each is taken only after the one before it."""
        if not gate.try_acquire():
            return 0
        if not self._global.try_take():
            return 1
        return 3 if self._rate.take_now() else 2

    async def _pass_region(self, gate: RegionGate) -> None:
        """``gate.acquire()``, waiting at most the retry time for a breaker that stays open.

        Each failed probe doubles the breaker's wait and lets one pair through, so a region
        that is down would hold the run for hours; instead its pairs give up (resume later)
        once its breaker has been open longer than a pair may spend retrying."""
        patience = self._settings.retry.max_elapsed_s
        while (since := gate.open_since) is not None:
            left = since + patience - anyio.current_time()
            if left <= 0:
                raise _RegionDown
            with anyio.move_on_after(left):
                await gate.acquire()
                return
        await gate.acquire()

    async def _send(self, attempt: _Attempt, gate: RegionGate) -> Outcome:
        task = attempt.task
        if attempt.reconcile:
            found = await self._ask_record(task, gate)
            attempt.reconcile = False
            if found is not None:
                status = self._reconciled(attempt, found[1])
                return Outcome(status, found[0], attempts=attempt.sent)
        if self._stop.is_set():
            # Admitted as the stop came (refused credentials, say): not sent, so not in flight.
            raise Stopped
        if attempt.ahead is None:
            await self._recorder.attempt(task, attempt.sent + 1)
        else:
            await attempt.ahead.durable()  # usually on disk since the last request went out
        # From here the request counts as sent: nothing to withdraw, nothing awaited before it.
        attempt.ahead = None
        attempt.sent += 1
        if attempt.first_sent is None:
            attempt.first_sent = time.time()
        if attempt.sent > 1:
            # A retry counts when it is sent, as ``report`` counts it (attempts - 1): not
            # when one is planned that a stop or the budget then cancels.
            self.stats.retries += 1
            self._progress.retry(task.destination_region)
        self._budget.record_attempt(first=attempt.sent == 1)
        if attempt.lane is not None:
            attempt.lane.fetch_ahead()
            attempt.lane = None
        self.stats.requests += 1
        pace = self._paced(task)
        sent_at = anyio.current_time() if pace is not None else 0.0
        try:
            record_id = await self._client.replicate(task)
        except ApiError as exc:
            if isinstance(exc, TransportError):
                attempt.reconcile = exc.maybe_applied
            _tell_gate(gate, exc)
            self._tell_pace(pace, sent_at, exc)
            raise
        self._tell_pace(pace, sent_at, None)
        gate.on_success()
        # What may really be in flight there: the global limit caps the region's.
        self._progress.set_limit(gate.region, min(gate.limit, self._settings.concurrency))
        return Outcome(ResultStatus.REPLICATED, record_id, http_status=200, attempts=attempt.sent)

    async def _lookup_existing(self, task: ReplicationTask, gate: RegionGate) -> str | None:
        """The record id of the replica that made the service refuse; best effort.

        A request like any other, under the same limits and rate. It finishes what an answered
        request started, so a stop does not skip it (the grace period still bounds it).
        """
        try:
            await self._admit(gate, task, stoppable=False)
        except _RegionDown:
            return None
        try:
            return await self._ask(task, gate)
        except ApiError as exc:
            log.info("replicate.lookup_failed", item=task.checkpoint_item_id, error=str(exc))
            return None
        finally:
            self._global.release()
            gate.release()

    async def _ask(self, task: ReplicationTask, gate: RegionGate) -> str | None:
        """``find_replication``, telling the gate what the answer said: a breaker probe that
        ends here must still close or reopen the breaker, or the region waits forever."""
        self.stats.requests += 1
        pace = self._paced(task)
        sent_at = anyio.current_time() if pace is not None else 0.0
        try:
            record_id = await self._client.find_replication(task)
        except ApiError as exc:
            _tell_gate(gate, exc)
            self._tell_pace(pace, sent_at, exc)
            raise
        self._tell_pace(pace, sent_at, None)
        gate.on_other()
        return record_id

    async def _ask_record(
        self, task: ReplicationTask, gate: RegionGate
    ) -> tuple[str, float | None] | None:
        """What reconcile needs of a record found: its id and when it was created."""
        if not isinstance(self._client, FindsRecords):
            record_id = await self._ask(task, gate)
            return None if record_id is None else (record_id, None)
        self.stats.requests += 1
        try:
            found = await self._client.find_replication_record(task)
        except ApiError as exc:
            _tell_gate(gate, exc)
            raise
        gate.on_other()
        return found

    def _reconciled(self, attempt: _Attempt, created_at: float | None) -> ResultStatus:
        """Ours or already there: a record created before the pair was first attempted (with
        a margin for the two clocks' skew) was not made by this tool's request."""
        first = attempt.first_sent or self._first_attempts.get(attempt.task.key)
        if created_at is None or first is None:
            return ResultStatus.REPLICATED
        if created_at < first - self._settings.reconcile_skew_s:
            return ResultStatus.ALREADY_REPLICATED
        return ResultStatus.REPLICATED

    async def _wait_or_stop(self, waiting: Awaitable[None]) -> None:
        with anyio.CancelScope() as scope:
            self._waiting.add(scope)
            if self._stop.is_set():
                scope.cancel()
            try:
                await waiting
            finally:
                self._waiting.discard(scope)
        if scope.cancelled_caught:
            raise Stopped


async def _next_item(receive: MemoryObjectReceiveStream[WorkItem]) -> WorkItem | None:
    """The next work item, None at the end; waits (and yields) only when none is queued."""
    try:
        return receive.receive_nowait()
    except anyio.WouldBlock:
        try:
            return await receive.receive()
        except anyio.EndOfStream:
            return None
    except anyio.EndOfStream:
        return None


@dataclass(slots=True)
class _Attempt:
    """Per-pair state carried across retries."""

    task: ReplicationTask
    reconcile: bool = False
    sent: int = 0
    #: The pair's first attempt line, written ahead and maybe not yet durable; None once the
    #: first request has gone out, or the pair has a result.
    ahead: Durable | None = None
    #: The worker's lane, until the pair's first request goes out (it then fetches ahead).
    lane: _Lane | None = None
    #: The transient error that the pair is waiting to retry (None before any).
    last_error: TransientApiError | None = None
    #: When this run first sent the pair's request (epoch seconds; None before).
    first_sent: float | None = None


class _Lane:
    """One worker's supply of pairs.

    As a pair's first request goes out, the lane takes the worker's next pair and writes
    that pair's first attempt line: the fsync that must precede the next request then happens
    during this request's round trip, not between the two."""

    __slots__ = ("_receive", "_recorder", "ahead")

    def __init__(self, receive: MemoryObjectReceiveStream[WorkItem], recorder: Recorder) -> None:
        self._receive = receive
        self._recorder = recorder
        self.ahead: _Attempt | None = None

    async def next(self) -> _Attempt | None:
        """The pair fetched ahead, else the next one queued (waiting for it); None at the end."""
        attempt, self.ahead = self.ahead, None
        if attempt is not None:
            return attempt
        item = await _next_item(self._receive)
        return None if item is None else _Attempt(item.task, item.reconcile_first, lane=self)

    def fetch_ahead(self) -> None:
        """Take the next pair if one is queued, and write its first attempt line."""
        try:
            item = self._receive.receive_nowait()
        except (anyio.WouldBlock, anyio.EndOfStream):
            return
        ahead = self._recorder.attempt_ahead(item.task)
        self.ahead = _Attempt(item.task, item.reconcile_first, ahead=ahead, lane=self)


def _outcome(
    status: ResultStatus,
    exc: ApiError,
    attempts: int,
    record_id: str | None = None,
    *,
    unknown: bool = False,
) -> Outcome:
    return Outcome(
        status,
        replication_record_id=record_id,
        http_status=exc.http_status,
        error_code=exc.error_code,
        error_msg=exc.error_msg or str(exc),
        attempts=attempts,
        outcome_unknown=unknown,
    )


def _throttled(exc: ApiError) -> bool:
    return is_throttle(exc.http_status, exc.error_code, exc.error_msg)


def _tell_gate(gate: RegionGate, exc: ApiError) -> None:
    """503s, timeouts and cut connections signal overload; any other answer does not. A
    throttled answer (429) says the *rate* is too high, not the region's concurrency: the
    rate controller owns it, and it never opens a breaker."""
    if isinstance(exc, TransientApiError) and not _throttled(exc):
        gate.on_overload()
    else:
        gate.on_other()
