"""``track``: follow the copies that replicate requests started, until each one ends.

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

Where a status comes from: ``GET /replication_records`` filtered by item and destination
region, the record with the ledger's id; when that endpoint answers 404 (it is unconfirmed on
the real service), the item's embedded ``replication_records``. A record the service does not
know (or an item that is gone) is *missing*: reported, not polled again, no ledger line.
Transient errors leave the pair for the next round.

Exit codes: 0 every copy succeeded (or nothing to track), 3 some copies failed, were skipped
or are missing, 6 the deadline passed with copies still running (run ``track`` again later).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final, TextIO

import anyio
import structlog

from orchestrator.cli.connection import connect
from orchestrator.config.settings import RunSettings
from orchestrator.errors import (
    ConfigError,
    OrchestratorError,
    PermanentApiError,
    TransientApiError,
)
from orchestrator.exitcodes import ExitCode
from orchestrator.ledger.file import LedgerWriter, iter_records, last_record
from orchestrator.ledger.history import History
from orchestrator.ledger.recorder import LedgerRecorder
from orchestrator.models import FINAL_SUCCESS
from orchestrator.service.preflight import HasCapabilities, patience, preflight
from orchestrator.service.protocol import ReplicationService
from orchestrator.service.records import CopyState, RecordReader, find_record

__all__ = [
    "PendingCopy",
    "TrackResult",
    "TrackSettings",
    "launch_track",
    "pending_copies",
    "track_copies",
    "track_ledger",
]

log = structlog.get_logger("orchestrator.track")

#: ``track``'s default deadline: it always ends, even when the service never says a copy did.
DEFAULT_DEADLINE_S: Final = 24 * 3600.0
_RUNNING_NAMED: Final = 20  # pairs named in the log line of those still running at the end
_SUCCESS_STATUSES: Final = frozenset(str(s) for s in FINAL_SUCCESS)

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class PendingCopy:
    """A pair whose replicate request succeeded and whose copy has not ended (as far as the
    ledger knows). ``last_status``: the latest copy status known for it: the ledger's, then
    what this run's polls saw (a status outside the contract's list included)."""

    project_id: str
    checkpoint_item_id: str
    destination_region: str
    destination_project_id: str | None
    source_region: str | None
    replication_record_id: str
    last_status: str | None = None
    #: A CBR pair (its ledger lines say ``backup_id``): the destination vault, else None.
    destination_vault_id: str | None = None

    def ids(self) -> dict[str, str | None]:
        if self.destination_vault_id is not None:
            return {
                "project_id": self.project_id,
                "backup_id": self.checkpoint_item_id,
                "source_region": self.source_region,
                "destination_region": self.destination_region,
                "destination_project_id": self.destination_project_id,
                "destination_vault_id": self.destination_vault_id,
            }
        return {
            "project_id": self.project_id,
            "checkpoint_item_id": self.checkpoint_item_id,
            "source_region": self.source_region,
            "destination_region": self.destination_region,
            "destination_project_id": self.destination_project_id,
        }


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


# -- what to track ---------------------------------------------------------------------------


def pending_copies(path: str | os.PathLike[str]) -> list[PendingCopy]:
    """The pairs of the ledger at ``path`` whose copy has not been seen to end.

    The latest result of the pair must be a success carrying a replication record id, and no
    ``copy_status`` line about that record may be final. Two passes: the history fold decides,
    a second read collects the ids of the few pairs still open.
    """
    history = History.load(path)
    reader = RecordReader()
    found: dict[tuple[str, str, str], PendingCopy] = {}
    for record in iter_records(path):
        pending = _pending_of(record, history, reader)
        if pending is not None:
            found[pending.project_id, pending.checkpoint_item_id, pending.destination_region] = (
                pending
            )
    return list(found.values())


def _pending_of(
    record: Mapping[str, Any], history: History, reader: RecordReader
) -> PendingCopy | None:
    if record.get("event") != "result" or record.get("status") not in _SUCCESS_STATUSES:
        return None
    record_id = record.get("replication_record_id")
    project = record.get("project_id")
    item = record.get("checkpoint_item_id") or record.get("backup_id")
    region = record.get("destination_region")
    if not all(isinstance(v, str) and v for v in (record_id, project, item, region)):
        return None
    key = (str(project), str(item), str(region))
    if history.record_id(key) != record_id:
        return None  # a later result replaced this one
    last = history.copy_status(key)
    state = reader.state(last)
    if state is not None and state.final:
        return None
    return PendingCopy(
        project_id=key[0],
        checkpoint_item_id=key[1],
        destination_region=key[2],
        destination_project_id=_text(record.get("destination_project_id")),
        source_region=_text(record.get("source_region")),
        replication_record_id=str(record_id),
        last_status=last,
        destination_vault_id=_text(record.get("destination_vault_id")),
    )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


# -- asking the service ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    """What the service said of one copy: its own word, what it means, the progress."""

    word: str
    state: CopyState
    progress: int | None


Seen = Answer | None  # None: the service does not know the record


async def poll_copy(client: ReplicationService, pair: PendingCopy) -> Seen:
    """The copy status and progress of ``pair``'s replication record, or None if unknown."""
    try:
        try:
            records = await client.replication_records(
                pair.project_id,
                region=pair.source_region,
                source_item_id=pair.checkpoint_item_id,
                destination_region=pair.destination_region,
            )
        except PermanentApiError as exc:
            if exc.http_status != 404:
                raise
            item = await client.get_item(
                pair.project_id, pair.checkpoint_item_id, region=pair.source_region
            )
            embedded = item.get("replication_records")
            records = embedded if isinstance(embedded, list) else []
    except PermanentApiError as exc:
        if exc.http_status == 404:
            return None  # the item is gone
        raise
    return _status_in(records, pair.replication_record_id, client.records)


def _status_in(records: Iterable[Any], record_id: str, reader: RecordReader) -> Seen:
    record = find_record(records, record_id)
    if record is None:
        return None
    raw = record.get("status")
    # The service's word, kept as it said it (bounded: it goes into the ledger).
    word = raw.strip().lower()[:40] if isinstance(raw, str) else ""
    state = reader.record_state(record)
    extra = record.get("extra_info")
    progress = extra.get("progress") if isinstance(extra, Mapping) else None
    if isinstance(progress, bool) or not isinstance(progress, int):
        progress = 100 if state is CopyState.SUCCESS else None
    return Answer(word, state, progress)


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
            for p in pairs[:_RUNNING_NAMED]
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


# -- the command -----------------------------------------------------------------------------


async def track_ledger(
    ledger: Path,
    client_factory: Callable[[], ReplicationService],
    settings: TrackSettings,
    *,
    sleep: Sleep = anyio.sleep,
    clock: Clock = time.monotonic,
    preflight_patience: float = 60.0,
) -> TrackResult:
    """Track every pending copy of ``ledger``, appending ``copy_status`` lines to it.

    The ledger is locked for the whole time (a run cannot write it meanwhile). One
    preflight request first: a service never reached for ``preflight_patience`` seconds,
    refused credentials or an endpoint that is not CSBS stop it before any poll.
    """
    if not await anyio.Path(ledger).exists():  # do not create one: there is nothing to track
        raise ConfigError(f"{ledger}: no such ledger")
    async with LedgerWriter(ledger) as writer:
        pending = await anyio.to_thread.run_sync(pending_copies, ledger)
        log.info("track.started", ledger=str(ledger), pending=len(pending))
        if not pending:
            return TrackResult()
        recorder = LedgerRecorder(writer, f"track-{uuid.uuid4().hex}")
        async with client_factory() as client:
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


def launch_track(args: argparse.Namespace, settings: RunSettings) -> int:
    """``track LEDGER``: poll until every copy ends (or the deadline); a summary on stdout."""
    options = TrackSettings(
        interval_s=args.interval, deadline_s=args.deadline, concurrency=args.poll_concurrency
    )
    result = anyio.run(_track, args, settings, options)
    print_track_summary(result, sys.stdout)
    return result.exit_code


def ledger_service(ledger: Path, asked: str | None) -> str:
    """The service of the ledger's last run (CSBS for ledgers from before ``--service``);
    ``asked`` (an explicit ``--service``) must agree with it."""
    started = last_record(ledger, "run_started") if ledger.exists() else None
    recorded = started.get("settings") if started else None
    service = (recorded.get("service") if isinstance(recorded, dict) else None) or "csbs"
    if asked is not None and asked != service:
        raise ConfigError(
            f"{ledger}: its runs used --service {service}, not {asked}: "
            f"track it with --service {service} (or leave --service out)"
        )
    return str(service)


async def _track(
    args: argparse.Namespace, settings: RunSettings, options: TrackSettings
) -> TrackResult:
    service = ledger_service(Path(args.ledger), getattr(args, "service", None))
    settings = replace(settings, service=service)
    async with connect(args, settings, os.environ) as conn:
        return await track_ledger(
            Path(args.ledger), conn.client, options, preflight_patience=patience(conn.settings)
        )


_VERDICT: Final = {
    ExitCode.OK: "copies done",
    ExitCode.FAILED: "copies done, some failed or were skipped: "
    "`resume --retry-failed` sends the failed ones again",
    ExitCode.INTERRUPTED: "deadline reached, copies still running: run `track` again later",
}


def print_track_summary(result: TrackResult, out: TextIO) -> None:
    if not result.tracked:
        out.write("nothing to track: no replicated pair is waiting for its copy\n")
        return
    parts = [
        f"{name} {n}"
        for name, n in (
            ("success", result.success),
            ("failed", result.failed),
            ("skipped", result.skipped),
            ("still copying", result.running),
            ("missing", result.missing),
        )
        if n
    ]
    out.write(
        f"{_VERDICT[result.exit_code]}: {', '.join(parts)} "
        f"({result.tracked} tracked, {result.rounds} rounds, {result.lines} ledger lines)\n"
    )
    for line in _still_running_lines(result.still_running):
        out.write(line + "\n")
    out.flush()


def _still_running_lines(pairs: Sequence[PendingCopy]) -> list[str]:
    """The copies still running when tracking stopped: the first few, and how many more."""
    if not pairs:
        return []
    lines = ["still running (item -> destination region, last status):"]
    lines += [
        f"  {p.checkpoint_item_id} -> {p.destination_region} ({p.last_status or 'no status yet'})"
        for p in pairs[:_RUNNING_NAMED]
    ]
    if len(pairs) > _RUNNING_NAMED:
        lines.append(f"  ... and {len(pairs) - _RUNNING_NAMED} more")
    return lines
