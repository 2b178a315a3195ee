"""A run's events as ledger lines (schema v1): the one place that knows the line shapes.

The pool sends no replicate request before that request's ``attempt`` line is durable: after
a crash, a pair with an attempt and no result is exactly a pair whose outcome is unknown. The
line is written either just before the request (:meth:`LedgerRecorder.attempt`, waiting for
its fsync) or, for a pair's first request, while the worker's previous request is in flight
(:meth:`LedgerRecorder.attempt_ahead`), so that the fsync is hidden behind the network.
Result lines are group-committed without waiting; a result lost in a crash leaves its durable
attempt behind, so resume reconciles that pair with the service.

After its ``run_started`` line, a recorder writes the run's ``attempt`` and ``result`` lines
compact (:mod:`orchestrator.ledger.compact`): about half the bytes, read back verbose.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from orchestrator.ledger.compact import Compactor, micros
from orchestrator.ledger.format import SCHEMA_VERSION, LedgerEvent
from orchestrator.ledger.run_lines import RunFinished, RunStarted
from orchestrator.models import Durable, Outcome, ReplicationTask, ResultStatus

__all__ = ["LedgerRecorder", "LineSink", "timestamp"]

_UNKNOWN: Mapping[str, bool] = {"outcome_unknown": True}


class LineSink(Protocol):
    def write(self, record: Mapping[str, Any]) -> Durable: ...

    async def write_durable(self, record: Mapping[str, Any]) -> None: ...


class _Timestamps:
    """``datetime.fromtimestamp(epoch, UTC).isoformat(timespec="microseconds")``, the same
    string, with the date and time formatted once per second instead of once per call (a run
    writes four timestamps per pair; formatting a datetime was most of a line's cost).

    Two seconds are kept, the latest and the one before: a result line stamps both its start
    and its end, and with one entry every request that spans a second's turn would format
    both (under callgrind, where a request lasts seconds, that was 4 % of a request)."""

    __slots__ = ("_seconds",)

    def __init__(self) -> None:
        # (latest second, its text, an earlier second, its text): one tuple, so that a reader
        # in another thread never sees half of an update.
        epoch = "1970-01-01T00:00:00"
        self._seconds: tuple[int, str, int, str] = (0, epoch, 0, epoch)

    def __call__(self, epoch: float | None = None) -> str:
        if epoch is None:
            epoch = time.time()
        # Rounded to the microsecond half to even, as datetime.fromtimestamp does.
        fraction, whole = math.modf(epoch)
        micros = round(fraction * 1e6)
        second = int(whole)
        if micros >= 1_000_000:
            second, micros = second + 1, micros - 1_000_000
        elif micros < 0:
            second, micros = second - 1, micros + 1_000_000
        latest, text, earlier, earlier_text = seconds = self._seconds
        if second != latest:
            if second == earlier:
                text = earlier_text
            else:
                text = _second_text(second)
                self._seconds = (
                    (second, text, latest, seconds[1])
                    if second > latest
                    else (latest, seconds[1], second, text)
                )
        return f"{text}.{micros:06d}+00:00"


def _second_text(second: int) -> str:
    return datetime.fromtimestamp(second, UTC).replace(tzinfo=None).isoformat(timespec="seconds")


#: When, as ISO-8601 UTC with microseconds: now, or at the given Unix time.
timestamp = _Timestamps()


class LedgerRecorder:
    """Writes one run's lines. ``run_id`` ties them together. ``cbr``: the run replicates
    CBR backups, so rejected rows name ``backup_id`` (a task says so itself)."""

    def __init__(
        self, sink: LineSink, run_id: str, *, cbr: bool = False, compact: bool = True
    ) -> None:
        self._sink = sink
        self.run_id = run_id
        self.cbr = cbr
        # After its run_started line, the run's attempt and result lines are written compact
        # (see orchestrator.ledger.compact); before it, or with compact=False, verbose.
        self._compact = compact
        self._compactor: Compactor | None = None

    def _line(self, event: str, **fields: Any) -> dict[str, Any]:
        return {
            "v": SCHEMA_VERSION,
            "event": event,
            "ts": timestamp(),
            "run_id": self.run_id,
            **fields,
        }

    async def run_started(self, started: RunStarted) -> None:
        now = time.time()
        line = self._line("run_started", **started.fields())
        line["ts"] = timestamp(now)
        await self._sink.write_durable(line)
        if self._compact:
            self._compactor = Compactor(micros(now))

    # attempt and result, once per request and per pair, are written as literals: the same
    # keys in the same order as _line's, without its keyword-argument copies.

    async def attempt(self, task: ReplicationTask, number: int) -> None:
        await self._sink.write(self._attempt_line(task, number)).durable()

    def attempt_ahead(self, task: ReplicationTask) -> Durable:
        """Write the pair's first ``attempt`` line now; the request goes out only after
        ``durable()`` of the returned handle, which is then usually long on disk."""
        return self._sink.write(self._attempt_line(task, 1))

    def _attempt_line(self, task: ReplicationTask, number: int) -> dict[str, Any]:
        now = time.time()
        compactor = self._compactor
        line = {
            "v": SCHEMA_VERSION,
            "event": LedgerEvent.ATTEMPT,
            # A compact line has no ts (it keeps t): not formatted for nothing.
            "ts": timestamp(now) if compactor is None else None,
            "run_id": self.run_id,
            "project_id": task.project_id,
            "checkpoint_item_id": task.checkpoint_item_id,
            "destination_region": task.destination_region,
            "destination_project_id": task.destination_project_id,
            "attempt": number,
        }
        if task.destination_vault_id is not None:
            line = _as_cbr(line, task)
        return line if compactor is None else compactor.attempt(line, micros(now))

    def result(self, task: ReplicationTask, outcome: Outcome, started: float) -> None:
        finished = time.time()
        finished_us = micros(finished)
        compactor = self._compactor
        # A compact line has none of the three timestamps (t and duration_s give them back):
        # they are formatted for a verbose line only.
        finished_at = None if compactor is not None else timestamp(finished)
        line = {
            "v": SCHEMA_VERSION,
            "event": LedgerEvent.RESULT,
            "ts": finished_at,
            "run_id": self.run_id,
            "checkpoint_item_id": task.checkpoint_item_id,
            "project_id": task.project_id,
            "source_region": task.source_region,
            "destination_region": task.destination_region,
            "destination_project_id": task.destination_project_id,
            "status": str(outcome.status),
            "replication_record_id": outcome.replication_record_id,
            "http_status": outcome.http_status,
            "error_code": outcome.error_code,
            "error_msg": outcome.error_msg,
            "attempts": outcome.attempts,
            "started_at": None if compactor is not None else timestamp(started),
            "finished_at": finished_at,
            # finished_at - started_at exactly (a compact line keeps only this and ts)
            "duration_s": (finished_us - micros(started)) / 1e6,
            "manifest_line": task.line or None,
        }
        if outcome.outcome_unknown:
            line.update(_UNKNOWN)
        if task.destination_vault_id is not None:
            line = _as_cbr(line, task)
        self._sink.write(line if compactor is None else compactor.result(line, finished_us))

    def rejected(
        self,
        *,
        manifest: str,
        line: int,
        field: str | None,
        reason: str,
        ids: Mapping[str, str | None],
    ) -> None:
        item_key = "backup_id" if self.cbr else "checkpoint_item_id"
        extra = {"destination_vault_id": ids.get("destination_vault_id")} if self.cbr else {}
        self._sink.write(
            self._line(
                "result",
                **{item_key: ids.get("checkpoint_item_id")},
                project_id=ids.get("project_id"),
                source_region=None,
                destination_region=ids.get("destination_region"),
                destination_project_id=ids.get("destination_project_id"),
                status=str(ResultStatus.REJECTED),
                replication_record_id=None,
                http_status=None,
                error_code="manifest.invalid",
                error_msg=reason,
                attempts=0,
                manifest=manifest,
                manifest_line=line,
                field=field,
                **extra,
            )
        )

    def copy_status(
        self,
        pair: Mapping[str, str | None],
        *,
        replication_record_id: str,
        copy_status: str,
        progress: int | None,
        state: str | None = None,
    ) -> None:
        """What ``track`` saw of a pair's copy; ``pair``: its ids and regions.
        ``copy_status``: the service's own word; ``state``: what it means (normalised)."""
        self._sink.write(
            self._line(
                "copy_status",
                **pair,
                replication_record_id=replication_record_id,
                copy_status=copy_status,
                state=state,
                progress=progress,
            )
        )

    async def run_finished(self, finished: RunFinished) -> None:
        await self._sink.write_durable(self._line("run_finished", **finished.fields()))


def _as_cbr(line: dict[str, Any], task: ReplicationTask) -> dict[str, Any]:
    """A CBR pair's line: ``backup_id`` for ``checkpoint_item_id``, and the destination vault
    next to the destination project (same order otherwise)."""
    out: dict[str, Any] = {}
    for key, value in line.items():
        if key == "checkpoint_item_id":
            out["backup_id"] = value
            continue
        out[key] = value
        if key == "destination_project_id":
            out["destination_vault_id"] = task.destination_vault_id
    return out
