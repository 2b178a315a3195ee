"""A run's events as ledger lines (schema v1): the one place that knows the line shapes.

The pool calls :meth:`LedgerRecorder.attempt` before each replicate request and waits until
that line is durable: after a crash, a pair with an attempt and no result is exactly a pair
whose outcome is unknown. Result lines are group-committed without waiting; a result lost in a
crash leaves its durable attempt behind, so resume reconciles that pair with the service.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from orchestrator.models import Outcome, ReplicationTask, ResultStatus

__all__ = ["SCHEMA_VERSION", "LedgerRecorder", "LineSink", "timestamp"]

SCHEMA_VERSION = 1


class LineSink(Protocol):
    def write(self, record: Mapping[str, Any]) -> None: ...

    async def write_durable(self, record: Mapping[str, Any]) -> None: ...


def timestamp(epoch: float | None = None) -> str:
    moment = datetime.now(UTC) if epoch is None else datetime.fromtimestamp(epoch, UTC)
    return moment.isoformat(timespec="microseconds")


class LedgerRecorder:
    """Writes one run's lines. ``run_id`` ties them together."""

    def __init__(self, sink: LineSink, run_id: str) -> None:
        self._sink = sink
        self.run_id = run_id

    def _line(self, event: str, **fields: Any) -> dict[str, Any]:
        return {
            "v": SCHEMA_VERSION,
            "event": event,
            "ts": timestamp(),
            "run_id": self.run_id,
            **fields,
        }

    async def run_started(self, **fields: Any) -> None:
        await self._sink.write_durable(self._line("run_started", **fields))

    async def attempt(self, task: ReplicationTask, number: int) -> None:
        await self._sink.write_durable(
            self._line(
                "attempt",
                project_id=task.project_id,
                checkpoint_item_id=task.checkpoint_item_id,
                destination_region=task.destination_region,
                destination_project_id=task.destination_project_id,
                attempt=number,
            )
        )

    def result(self, task: ReplicationTask, outcome: Outcome, started: float) -> None:
        finished = time.time()
        self._sink.write(
            self._line(
                "result",
                checkpoint_item_id=task.checkpoint_item_id,
                project_id=task.project_id,
                source_region=task.source_region,
                destination_region=task.destination_region,
                destination_project_id=task.destination_project_id,
                status=str(outcome.status),
                replication_record_id=outcome.replication_record_id,
                http_status=outcome.http_status,
                error_code=outcome.error_code,
                error_msg=outcome.error_msg,
                attempts=outcome.attempts,
                started_at=timestamp(started),
                finished_at=timestamp(finished),
                duration_s=round(finished - started, 6),
                manifest_line=task.line or None,
            )
        )

    def rejected(
        self,
        *,
        manifest: str,
        line: int,
        field: str | None,
        reason: str,
        ids: Mapping[str, str | None],
    ) -> None:
        self._sink.write(
            self._line(
                "result",
                checkpoint_item_id=ids.get("checkpoint_item_id"),
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
            )
        )

    async def run_finished(self, **fields: Any) -> None:
        await self._sink.write_durable(self._line("run_finished", **fields))
