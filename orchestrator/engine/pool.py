"""The worker pool: feeds work items to per-region workers under every limit, retries, stops.

Shape (structured concurrency, no hand-managed tasks)::

    run()
    └── task group
        ├── producer: plan's work items -> one bounded stream per destination region
        ├── deadline watcher (--max-duration), grace watcher (after a stop request)
        └── per region: `ceiling` workers, each attempt admitted by
              pace (learned rate of its endpoint and project, see engine/pace.py) ->
              region gate (breaker + adaptive limit) -> global limiter -> rate limiter

The units it runs: admission (pace, region gate, global limit, rate) in
:mod:`~orchestrator.engine.admission`; the few requests sent before the credentials are known
to work, :mod:`~orchestrator.engine.probe`; the look-ups of the service's records (reconcile,
"already replicated"), :mod:`~orchestrator.engine.reconcile`; what an answer tells the limits,
:mod:`~orchestrator.engine.feedback`; one pair's state, :mod:`~orchestrator.engine.attempt`.

Stopping is two-staged. :meth:`Pool.request_stop` (first signal, deadline, failure threshold,
revoked credentials) stops feeding and starting pairs; requests already sent finish, bounded
by the grace period. :meth:`Pool.cancel` (second signal, grace expired) cancels at once: pairs
then in flight have a durable ``attempt`` and no result, so resume reconciles them. Either
way, a pair whose attempt line a worker wrote ahead (see
:class:`~orchestrator.engine.attempt.Lane`) but never sent gets a ``gave_up`` result marked
as not sent, and a pair waiting to retry gets ``gave_up`` with its last answer.

The pool knows neither HTTP nor the ledger: it talks to a
:class:`~orchestrator.engine.pool_types.Replicator` and a
:class:`~orchestrator.engine.pool_types.Recorder`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping

import anyio
import structlog
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from orchestrator.engine.admission import Admission, RegionDown
from orchestrator.engine.attempt import NOT_SENT, Attempt, Lane, outcome_of
from orchestrator.engine.feedback import tell_gate, tell_pace
from orchestrator.engine.limiters import Stopped
from orchestrator.engine.overload import RegionGate
from orchestrator.engine.pair_retry import PairRetries
from orchestrator.engine.pool_types import (
    PoolSettings,
    PoolStats,
    Recorder,
    Replicator,
)
from orchestrator.engine.probe import CredentialProbes
from orchestrator.engine.progress import NullProgress, Progress
from orchestrator.engine.reconcile import Reconciler
from orchestrator.engine.retry import RetryBudget
from orchestrator.engine.stop_rules import FailureThreshold, Unreachable
from orchestrator.engine.stop_signal import StopSignal
from orchestrator.errors import (
    AlreadyReplicatedError,
    ApiError,
    AuthError,
    PermanentApiError,
    TransientApiError,
    TransportError,
)
from orchestrator.ledger.format import StopReason
from orchestrator.models import Outcome, PairKey, ResultStatus, WorkItem

__all__ = ["Pool"]

log = structlog.get_logger("orchestrator.engine.pool")

_FEED_BATCH = 256  # pairs queued between the producer's turns


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
        self._recorder = recorder
        self._settings = settings
        self._progress: Progress = progress or NullProgress()
        self._stop = StopSignal()
        self._admission = Admission(settings, self._stop)
        self._global = self._admission.slots
        self._budget = RetryBudget(
            settings.retry_budget_percent / 100.0, min_per_s=settings.retry_budget_min_per_s
        )
        self._retries = PairRetries(
            settings.retry, self._budget, self._stop, rng=rng or random.Random(), sleep=sleep
        )
        self._scope: anyio.CancelScope | None = None
        self._threshold = FailureThreshold(settings.failure_min_results, settings.failure_percent)
        self._unreachable = Unreachable(settings.unreachable_after_s, anyio.current_time)
        self._probes = CredentialProbes(self._stop, self._unreachable)
        self.stats = PoolStats()
        self._reconciler = Reconciler(
            client,
            self._admission,
            self.stats,
            self._progress,
            first_attempts=first_attempts or {},
            skew_s=settings.reconcile_skew_s,
        )

    # -- control -------------------------------------------------------------------------

    def request_stop(self, reason: StopReason) -> None:
        """Stop feeding and starting pairs; let requests in flight finish (bounded by grace)."""
        if self._stop.is_set():
            return
        self.stats.stop_reason = reason
        self._stop.set()
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
        return self._admission.pace_summary()

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
            for region, gate in self._admission.gates.items():
                self.stats.limits[region] = gate.history
                self.stats.breaker_trips[region] = gate.breaker_trips
            self.stats.pace = self.pace_summary()
        return self.stats

    def _open_region(
        self, region: str
    ) -> tuple[MemoryObjectSendStream[WorkItem], MemoryObjectReceiveStream[WorkItem]]:
        self._admission.open_region(region)
        return anyio.create_memory_object_stream[WorkItem](self._settings.queue_per_region)

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
                    await self._stop.wait_or_stop(send.send(item))
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
        gate = self._admission.gates[region]
        lane = Lane(receive, self._recorder)
        attempt: Attempt | None = None
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
                if attempt is not None and attempt.unanswered:
                    # Sent (or its line written) and cut off by the stop: its outcome is
                    # unknown until resume asks the service; the summary counts it as
                    # ``report`` does.
                    self.stats.unknown += 1

    def _withdraw(self, *attempts: Attempt | None) -> None:
        """Give up, as not sent, the pairs whose attempt line was written ahead but whose
        request never went out: without a result after it, that line would make the pair
        look in flight, and resume would ask the service about it before sending it."""
        for attempt in attempts:
            if attempt is not None and attempt.ahead is not None:
                outcome = Outcome(ResultStatus.GAVE_UP, error_msg=NOT_SENT, attempts=attempt.sent)
                self._finish(attempt, outcome, time.time(), quiet=True)

    def _finish(
        self, attempt: Attempt, outcome: Outcome, started: float, *, quiet: bool = False
    ) -> None:
        attempt.ahead = None  # the pair has its result: nothing is left to withdraw
        attempt.unanswered = False
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
        shown = "not_sent" if outcome.error_msg is NOT_SENT else outcome.status
        self._progress.advance(task.destination_region, shown)
        self._check_threshold()

    def _check_threshold(self) -> None:
        if self._threshold.check(self.stats.counts) is not None:
            self.request_stop(StopReason.THRESHOLD)

    # -- one pair --------------------------------------------------------------------------

    async def _replicate(self, attempt: Attempt, gate: RegionGate) -> Outcome:
        try:
            return await self._with_retries(attempt, gate)
        except AlreadyReplicatedError as exc:
            record_id = await self._reconciler.lookup_existing(attempt.task, gate)
            return outcome_of(ResultStatus.ALREADY_REPLICATED, exc, attempt.sent, record_id)
        except AuthError as exc:
            # Not this pair's fault: it stays retryable, and the whole run stops.
            self.stats.auth_error = str(exc)
            self.request_stop(StopReason.AUTH)
            return outcome_of(ResultStatus.GAVE_UP, exc, attempt.sent, unknown=attempt.reconcile)
        except PermanentApiError as exc:
            return await self._reconciler.refusal(attempt, gate, exc)
        except TransientApiError as exc:
            return outcome_of(ResultStatus.GAVE_UP, exc, attempt.sent, unknown=attempt.reconcile)
        except (Stopped, RegionDown) as exc:
            return self._unfinished(attempt, gate, exc)

    def _unfinished(self, attempt: Attempt, gate: RegionGate, exc: Exception) -> Outcome:
        """The outcome of a pair whose retries were cut short; re-raises :class:`Stopped`
        when the pair has no answer to record yet (withdrawn if its line was written ahead)."""
        if isinstance(exc, RegionDown):
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

    async def _with_retries(self, attempt: Attempt, gate: RegionGate) -> Outcome:
        # Most first attempts succeed, and a retry controller costs more than the rest of a
        # request's bookkeeping: the first attempt goes without one. Its transient failure is
        # handed to a controller as that controller's attempt 1, started when it really was.
        started = time.monotonic()
        try:
            return await self._one_try(attempt, gate)
        except TransientApiError as exc:
            return await self._retries.retry(
                attempt, exc, started, lambda: self._one_try(attempt, gate)
            )

    async def _one_try(self, attempt: Attempt, gate: RegionGate) -> Outcome:
        probe = await self._probes.take()
        answered = False
        try:
            await self._admission.admit(gate, attempt.task)
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
                self._probes.end(verified=answered)

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

    async def _send(self, attempt: Attempt, gate: RegionGate) -> Outcome:
        task = attempt.task
        if attempt.reconcile:
            found = await self._reconciler.reconcile(attempt, gate)
            if found is not None:
                return found
        if self._stop.is_set():
            # Admitted as the stop came (refused credentials, say): not sent, so not in flight.
            raise Stopped
        if attempt.ahead is None:
            attempt.unanswered = True  # the line is written before the first await
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
        pace = self._admission.paced(task)
        sent_at = self._admission.clock() if pace is not None else 0.0
        try:
            record_id = await self._client.replicate(task)
        except ApiError as exc:
            if isinstance(exc, TransportError):
                attempt.reconcile = exc.maybe_applied
            tell_gate(gate, exc)
            tell_pace(pace, sent_at, exc, self._progress)
            raise
        tell_pace(pace, sent_at, None, self._progress)
        gate.on_success()
        # What may really be in flight there: the global limit caps the region's.
        self._progress.set_limit(gate.region, min(gate.limit, self._settings.concurrency))
        return Outcome(ResultStatus.REPLICATED, record_id, http_status=200, attempts=attempt.sent)
