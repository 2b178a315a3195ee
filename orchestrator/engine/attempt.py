"""One pair on its way through a worker: its state across retries (:class:`Attempt`), the
worker's supply of pairs (:class:`Lane`), and the outcome an error gives it."""

from __future__ import annotations

from dataclasses import dataclass

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

from orchestrator.engine.pool_types import Recorder
from orchestrator.errors import ApiError, TransientApiError
from orchestrator.models import Durable, Outcome, ReplicationTask, ResultStatus, WorkItem

__all__ = ["NOT_SENT", "Attempt", "Lane", "outcome_of"]

#: The error message of a pair the stop withdrew before its request went out.
NOT_SENT = "not sent: the run stopped before this pair's request went out"


@dataclass(slots=True)
class Attempt:
    """Per-pair state carried across retries."""

    task: ReplicationTask
    reconcile: bool = False
    sent: int = 0
    #: The pair's first attempt line, written ahead and maybe not yet durable; None once the
    #: first request has gone out, or the pair has a result.
    ahead: Durable | None = None
    #: The worker's lane, until the pair's first request goes out (it then fetches ahead).
    lane: Lane | None = None
    #: The transient error that the pair is waiting to retry (None before any).
    last_error: TransientApiError | None = None
    #: When this run first sent the pair's request (epoch seconds; None before).
    first_sent: float | None = None
    #: The ledger holds an attempt line of this run for the pair and no result after it yet:
    #: a pair left so when the run ends is in flight, ``unknown`` to ``report``.
    unanswered: bool = False


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


class Lane:
    """One worker's supply of pairs.

    As a pair's first request goes out, the lane takes the worker's next pair and writes
    that pair's first attempt line: the fsync that must precede the next request then happens
    during this request's round trip, not between the two."""

    __slots__ = ("_receive", "_recorder", "ahead")

    def __init__(self, receive: MemoryObjectReceiveStream[WorkItem], recorder: Recorder) -> None:
        self._receive = receive
        self._recorder = recorder
        self.ahead: Attempt | None = None

    async def next(self) -> Attempt | None:
        """The pair fetched ahead, else the next one queued (waiting for it); None at the end."""
        attempt, self.ahead = self.ahead, None
        if attempt is not None:
            return attempt
        item = await _next_item(self._receive)
        return None if item is None else Attempt(item.task, item.reconcile_first, lane=self)

    def fetch_ahead(self) -> None:
        """Take the next pair if one is queued, and write its first attempt line."""
        try:
            item = self._receive.receive_nowait()
        except (anyio.WouldBlock, anyio.EndOfStream):
            return
        ahead = self._recorder.attempt_ahead(item.task)
        self.ahead = Attempt(
            item.task, item.reconcile_first, ahead=ahead, lane=self, unanswered=True
        )


def outcome_of(
    status: ResultStatus,
    exc: ApiError,
    attempts: int,
    record_id: str | None = None,
    *,
    unknown: bool = False,
) -> Outcome:
    """The outcome of a pair whose last answer was ``exc``."""
    return Outcome(
        status,
        replication_record_id=record_id,
        http_status=exc.http_status,
        error_code=exc.error_code,
        error_msg=exc.error_msg or str(exc),
        attempts=attempts,
        outcome_unknown=unknown,
    )
