"""Tracking: follow the copies that replicate requests started, until each one ends.

A 200 to a replicate request only means "accepted": the copy runs for minutes to hours and can
still fail. ``track`` reads the ledger for pairs whose latest result is a success with a
replication record id and no final ``copy_status`` yet, asks the service about each record
every ``interval_s`` seconds until it ends (``success``, ``fail`` or ``skip``) or the deadline
passes (24 hours by default: ``track`` always ends, naming the copies still running), and
appends a ``copy_status`` line to the ledger whenever a copy's status changes (not on every
poll: a long copy must not grow the ledger). The line keeps the service's own word
(``copy_status``) and adds what it means (``state``: running, success, failed, skipped; see
:mod:`orchestrator.service.records`). ``resume --retry-failed`` later sends the pairs
whose copy failed again (see the decision table in :mod:`orchestrator.engine.plan`).

Which copies are pending and what the service says of one: :mod:`orchestrator.engine.copies`.
A record the service does not know (or an item that is gone) is *missing*: reported, not
polled again, no ledger line. Transient errors leave the pair for the next round. The
command (``track LEDGER``, its summary) is :mod:`orchestrator.cli.tracking`.

Exit codes: 0 every copy succeeded (or nothing to track), 3 some copies failed, were skipped
or are missing, 6 the deadline passed with copies still running (run ``track`` again later).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import anyio
import structlog

from orchestrator.engine.copies import PendingCopy, Seen, pending_copies, poll_copy
from orchestrator.engine.paced_service import Pacing
from orchestrator.errors import (
    ConfigError,
    OrchestratorError,
    PermanentApiError,
    TransientApiError,
)
from orchestrator.exitcodes import ExitCode
from orchestrator.ledger.file import LedgerWriter
from orchestrator.ledger.recorder import LedgerRecorder
from orchestrator.service.preflight import HasCapabilities, preflight
from orchestrator.service.protocol import ReplicationService
from orchestrator.service.records import CopyState

__all__ = [
    "DEFAULT_DEADLINE_S",
    "RUNNING_NAMED",
    "TrackResult",
    "TrackSettings",
    "track_copies",
    "track_ledger",
]

log = structlog.get_logger("orchestrator.track")

#: ``track``'s default deadline: it always ends, even when the service never says a copy did.
DEFAULT_DEADLINE_S: Final = 24 * 3600.0
RUNNING_NAMED: Final = 20  # pairs named in the log line of those still running at the end

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class TrackSettings:
    interval_s: float = 60.0
    """Seconds between two polls of the same copy."""
    deadline_s: float = DEFAULT_DEADLINE_S
    """Stop after this many seconds even if copies are still running (0: no deadline, only
    for callers that bound the time themselves)."""
    concurrency: int = 16
    """Status requests in flight."""

    def __post_init__(self) -> None:
        if self.interval_s < 0 or self.deadline_s < 0 or self.concurrency < 1:
            raise ConfigError("--interval and --deadline must be >= 0, --concurrency >= 1")


@dataclass(slots=True)
class TrackResult:
    tracked: int = 0
    success: int = 0
    failed: int = 0
    skipped: int = 0  # the service skipped the copy (record status ``skip``): final
    missing: int = 0
    running: int = 0  # still waiting_copy or copying when tracking stopped
    rounds: int = 0
    lines: int = 0  # copy_status lines appended
    failures: list[PendingCopy] = field(default_factory=list)
    still_running: list[PendingCopy] = field(default_factory=list)

    @property
    def exit_code(self) -> ExitCode:
        if self.running:
            return ExitCode.INTERRUPTED
        if self.failed or self.skipped or self.missing:
            return ExitCode.FAILED
        return ExitCode.OK


# -- the loop --------------------------------------------------------------------------------


async def track_copies(
    client: ReplicationService,
    pending: Sequence[PendingCopy],
    recorder: LedgerRecorder,
    settings: TrackSettings,
    *,
    sleep: Sleep = anyio.sleep,
    clock: Clock = time.monotonic,
) -> TrackResult:
    """Poll every pending copy each round until none is left or the deadline has passed.

    A round polls every open copy (``settings.concurrency`` at a time); a ``copy_status``
    line is written for each status change. Between rounds: ``sleep(interval)``, cut short
    by the deadline, after which one last round runs.
    """
    result = TrackResult(tracked=len(pending))
    started = clock()
    open_copies = list(pending)
    while open_copies:
        result.rounds += 1
        seen = await _round(client, open_copies, settings.concurrency)
        open_copies = _settle(open_copies, seen, recorder, result)
        _log_round(result, open_copies, len(seen))
        elapsed = clock() - started
        if not open_copies or (settings.deadline_s and elapsed >= settings.deadline_s):
            break
        wait = settings.interval_s
        if settings.deadline_s:
            wait = min(wait, settings.deadline_s - elapsed)
        await sleep(wait)
    result.running = len(open_copies)
    result.still_running = list(open_copies)
    if open_copies:
        _log_still_running(open_copies)
    return result


def _log_still_running(pairs: Sequence[PendingCopy]) -> None:
    """Name the copies still running when tracking stopped (the first few, and how many)."""
    log.warning(
        "track.still_running",
        count=len(pairs),
        pairs=[
            f"{p.checkpoint_item_id}->{p.destination_region} ({p.last_status or 'no status'})"
            for p in pairs[:RUNNING_NAMED]
        ],
        action="run `track` again later",
    )


async def _round(
    client: ReplicationService, pairs: Sequence[PendingCopy], concurrency: int
) -> dict[PendingCopy, Seen]:
    """Poll each pair once, ``concurrency`` at a time; pairs that hit a transient error are
    left out of the answer (they stay open)."""
    seen: dict[PendingCopy, Seen] = {}
    feed: Iterator[PendingCopy] = iter(pairs)

    async def worker() -> None:
        for pair in feed:  # one shared iterator: each pair goes to exactly one worker
            try:
                seen[pair] = await poll_copy(client, pair)
            except (TransientApiError, PermanentApiError) as exc:
                log.warning(
                    "track.poll_error",
                    checkpoint_item_id=pair.checkpoint_item_id,
                    destination_region=pair.destination_region,
                    error=str(exc),
                    http_status=exc.http_status,
                )

    try:
        async with anyio.create_task_group() as tg:
            for _ in range(min(concurrency, len(pairs))):
                tg.start_soon(worker)
    except* OrchestratorError as group:  # credentials refused, a bad endpoint: stop tracking
        raise group.exceptions[0]  # noqa: B904 - unwrap; it keeps its own cause
    return seen


def _settle(
    pairs: Sequence[PendingCopy],
    seen: Mapping[PendingCopy, Seen],
    recorder: LedgerRecorder,
    result: TrackResult,
) -> list[PendingCopy]:
    """Record what this round saw; returns the copies still open."""
    still_open: list[PendingCopy] = []
    for pair in pairs:
        if pair not in seen:
            still_open.append(pair)  # a transient error: ask again next round
            continue
        answer = seen[pair]
        if answer is None:
            result.missing += 1
            log.warning(
                "track.missing",
                checkpoint_item_id=pair.checkpoint_item_id,
                destination_region=pair.destination_region,
                replication_record_id=pair.replication_record_id,
            )
            continue
        if answer.word != pair.last_status:
            # An unknown word is recorded too (as running): the ledger keeps what was said.
            recorder.copy_status(
                pair.ids(),
                replication_record_id=pair.replication_record_id,
                copy_status=answer.word,
                state=answer.state.value,
                progress=answer.progress,
            )
            result.lines += 1
        state = answer.state
        if state is CopyState.SUCCESS:
            result.success += 1
        elif state is CopyState.SKIPPED:
            result.skipped += 1
            result.failures.append(pair)
            log.warning(
                "track.copy_skipped",
                checkpoint_item_id=pair.checkpoint_item_id,
                destination_region=pair.destination_region,
                replication_record_id=pair.replication_record_id,
            )
        elif state is CopyState.FAILED:
            result.failed += 1
            result.failures.append(pair)
            log.warning(
                "track.copy_failed",
                checkpoint_item_id=pair.checkpoint_item_id,
                destination_region=pair.destination_region,
                replication_record_id=pair.replication_record_id,
            )
        else:
            still_open.append(_with_status(pair, answer.word))
    return still_open


def _with_status(pair: PendingCopy, status: str) -> PendingCopy:
    if status == pair.last_status:
        return pair
    return PendingCopy(
        pair.project_id,
        pair.checkpoint_item_id,
        pair.destination_region,
        pair.destination_project_id,
        pair.source_region,
        pair.replication_record_id,
        status,
        pair.destination_vault_id,
    )


def _log_round(result: TrackResult, still_open: Sequence[PendingCopy], answered: int) -> None:
    log.info(
        "track.round",
        round=result.rounds,
        answered=answered,
        success=result.success,
        failed=result.failed,
        missing=result.missing,
        running=len(still_open),
    )


async def track_ledger(
    ledger: Path,
    client_factory: Callable[[], ReplicationService],
    settings: TrackSettings,
    *,
    sleep: Sleep = anyio.sleep,
    clock: Clock = time.monotonic,
    preflight_patience: float = 60.0,
    pacing: Pacing | None = None,
) -> TrackResult:
    """Track every pending copy of ``ledger``, appending ``copy_status`` lines to it.

    The ledger is locked for the whole time (a run cannot write it meanwhile). One
    preflight request first: a service never reached for ``preflight_patience`` seconds,
    refused credentials or an endpoint that is not CSBS stop it before any poll. With
    ``pacing``, every request (the preflight and each poll) goes at the pace of its source
    endpoint and project (its waits on ``pacing``'s own sleep and clock).
    """
    if not await anyio.Path(ledger).exists():  # do not create one: there is nothing to track
        raise ConfigError(f"{ledger}: no such ledger")
    async with LedgerWriter(ledger) as writer:
        pending = await anyio.to_thread.run_sync(pending_copies, ledger)
        log.info("track.started", ledger=str(ledger), pending=len(pending))
        if not pending:
            return TrackResult()
        recorder = LedgerRecorder(writer, f"track-{uuid.uuid4().hex}")
        async with client_factory() as opened:
            client = opened if pacing is None else pacing.wrap(opened)
            if isinstance(client, HasCapabilities):  # unreachable or refused: stop at once
                first = pending[0]
                await preflight(
                    client,
                    first.project_id,
                    region=first.source_region,
                    give_up_after=preflight_patience,
                )
            result = await track_copies(
                client, pending, recorder, settings, sleep=sleep, clock=clock
            )
    log.info(
        "track.finished",
        tracked=result.tracked,
        success=result.success,
        failed=result.failed,
        missing=result.missing,
        running=result.running,
        rounds=result.rounds,
    )
    return result
