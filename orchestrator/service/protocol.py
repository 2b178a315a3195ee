"""What the engine and the commands need of a backup service, whichever one it is.

CSBS v1 (:class:`~orchestrator.service.client.CsbsClient`) and CBR v3
(:class:`~orchestrator.service.cbr.CbrClient`) both satisfy :class:`ReplicationService`
structurally; nothing above this layer names either of them. Records come back in one
shape: a replication record is ``{"id", "status", "destination_region",
"source_checkpoint_item_id", "extra_info": {"progress"}}``; its ``status`` is read through the
service's :attr:`~ReplicationService.records` reader (:mod:`orchestrator.service.records`),
which knows both of CSBS's vocabularies and what CBR's states are mapped to.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any, Protocol, Self

from orchestrator.models import ReplicationTask
from orchestrator.service.records import RecordReader

__all__ = ["ReplicationService"]


class ReplicationService(Protocol):
    """Replicate, look up records (reconcile, already-replicated), capabilities, list
    backups, follow copies. Used as an async context manager for one run."""

    #: Reads a record's status word into a normalised state (running, success, ...).
    records: RecordReader

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def replicate(self, task: ReplicationTask) -> str:
        """Start one copy; the replication record id."""

    async def find_replication(self, task: ReplicationTask) -> str | None:
        """The id of a copy of ``task.key`` that has not failed, or None."""

    async def capabilities(
        self, project_id: str, *, region: str | None = None
    ) -> dict[str, list[str]]:
        """Source region -> the regions it may replicate to."""

    async def get_item(
        self, project_id: str, item_id: str, *, region: str | None = None
    ) -> dict[str, Any]:
        """One backup (checkpoint item), with its ``replication_records`` when known."""

    def iter_items(
        self,
        project_id: str,
        *,
        region: str | None = None,
        page_size: int = 1000,
        marker: str | None = None,
        **filters: str | int | bool,
    ) -> AsyncIterator[dict[str, Any]]:
        """Every backup matching ``filters``, page after page; from after the backup
        ``marker`` when given (a listing that failed asks its page again from there)."""

    async def replication_records(
        self,
        project_id: str,
        *,
        region: str | None = None,
        source_item_id: str | None = None,
        destination_region: str | None = None,
        status: str | None = None,
    ) -> list[dict[str, Any]]:
        """Replication records (copies) of the project, in the common vocabulary."""
