"""The service's own records, asked about one pair: before a re-send whose first request may
have been applied (reconcile), and after a refusal that may mean "already replicated" (the
id of the existing replica).

These lookups are requests like any other: they take the same limits, and their answers tell
the region gate and the pace what a replicate's answer would.
"""

from __future__ import annotations

from collections.abc import Mapping

import structlog

from orchestrator.engine.admission import Admission, RegionDown
from orchestrator.engine.attempt import Attempt, outcome_of
from orchestrator.engine.feedback import tell_gate, tell_pace
from orchestrator.engine.overload import RegionGate
from orchestrator.engine.pool_types import FindsRecords, PoolStats, Replicator
from orchestrator.engine.progress import Progress
from orchestrator.errors import ApiError, PermanentApiError
from orchestrator.models import Outcome, PairKey, ReplicationTask, ResultStatus

__all__ = ["Reconciler"]

log = structlog.get_logger("orchestrator.engine.pool")


class Reconciler:
    """Finds a pair's replication record, and says whether this tool made it."""

    def __init__(
        self,
        client: Replicator,
        admission: Admission,
        stats: PoolStats,
        progress: Progress,
        *,
        first_attempts: Mapping[PairKey, float],
        skew_s: float,
    ) -> None:
        self._client = client
        self._admission = admission
        self._stats = stats
        self._progress = progress
        # When a pair reconciled from an earlier run was first attempted (epoch seconds).
        self._first_attempts = first_attempts
        self._skew_s = skew_s

    async def reconcile(self, attempt: Attempt, gate: RegionGate) -> Outcome | None:
        """Before a re-send: the outcome if the service has the pair's record, else None
        (send it). The caller holds the admission this lookup goes under."""
        found = await self._ask_record(attempt.task, gate)
        attempt.reconcile = False
        if found is None:
            return None
        status = self._reconciled(attempt, found[1])
        return Outcome(status, found[0], attempts=attempt.sent)

    async def refusal(self, attempt: Attempt, gate: RegionGate, exc: PermanentApiError) -> Outcome:
        """A final refusal. A 400 the error table does not know may be the service refusing
        a duplicate in words we have not met ("A replica already exists in the destination
        region"): before recording ``failed``, ask the service's own records. Only this
        error path pays for the lookup; a 200 never does."""
        if exc.http_status == 400 and exc.unrecognised:
            record_id = await self.lookup_existing(attempt.task, gate)
            if record_id is not None:
                log.info(
                    "replicate.refusal_was_duplicate",
                    item=attempt.task.checkpoint_item_id,
                    region=attempt.task.destination_region,
                    error_code=exc.error_code,
                    replication_record_id=record_id,
                )
                return outcome_of(ResultStatus.ALREADY_REPLICATED, exc, attempt.sent, record_id)
        return outcome_of(ResultStatus.FAILED, exc, attempt.sent)

    async def lookup_existing(self, task: ReplicationTask, gate: RegionGate) -> str | None:
        """The record id of the replica that made the service refuse; best effort.

        A request like any other, under the same limits and rate. It finishes what an answered
        request started, so a stop does not skip it (the grace period still bounds it).
        """
        try:
            await self._admission.admit(gate, task, stoppable=False)
        except RegionDown:
            return None
        try:
            return await self._ask(task, gate)
        except ApiError as exc:
            log.info("replicate.lookup_failed", item=task.checkpoint_item_id, error=str(exc))
            return None
        finally:
            self._admission.slots.release()
            gate.release()

    async def _ask(self, task: ReplicationTask, gate: RegionGate) -> str | None:
        """``find_replication``, telling the gate what the answer said: a breaker probe that
        ends here must still close or reopen the breaker, or the region waits forever."""
        self._stats.requests += 1
        pace = self._admission.paced(task)
        sent_at = self._admission.clock() if pace is not None else 0.0
        try:
            record_id = await self._client.find_replication(task)
        except ApiError as exc:
            tell_gate(gate, exc)
            tell_pace(pace, sent_at, exc, self._progress)
            raise
        tell_pace(pace, sent_at, None, self._progress)
        gate.on_other()
        return record_id

    async def _ask_record(
        self, task: ReplicationTask, gate: RegionGate
    ) -> tuple[str, float | None] | None:
        """What reconcile needs of a record found: its id and when it was created."""
        if not isinstance(self._client, FindsRecords):
            record_id = await self._ask(task, gate)
            return None if record_id is None else (record_id, None)
        self._stats.requests += 1
        try:
            found = await self._client.find_replication_record(task)
        except ApiError as exc:
            tell_gate(gate, exc)
            raise
        gate.on_other()
        return found

    def _reconciled(self, attempt: Attempt, created_at: float | None) -> ResultStatus:
        """Ours or already there: a record created before the pair was first attempted (with
        a margin for the two clocks' skew) was not made by this tool's request."""
        first = attempt.first_sent or self._first_attempts.get(attempt.task.key)
        if created_at is None or first is None:
            return ResultStatus.REPLICATED
        if created_at < first - self._skew_s:
            return ResultStatus.ALREADY_REPLICATED
        return ResultStatus.REPLICATED
