"""The CSBS v1 calls: replicate, read and list checkpoint items, replication records and
capabilities, and find the record a replicate call made.

:class:`CsbsClient` is used as ``async with CsbsClient(settings, auth) as c:``; how it
reaches the service is :class:`~orchestrator.service.settings.ClientSettings`, its request
path, error mapping and bounds are :class:`~orchestrator.service.http_core.HttpCore`'s. A
``TransportError`` with ``maybe_applied`` from :meth:`CsbsClient.replicate` means the
outcome is unknown: reconcile with :meth:`CsbsClient.find_replication` before sending it
again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar, NamedTuple, cast

import orjson

from orchestrator.errors import PermanentApiError
from orchestrator.models import PROVIDER_ID, ReplicationTask
from orchestrator.service.answer import accepted_record_id, destinations_by_region
from orchestrator.service.http_core import HttpCore, query_value, segment
from orchestrator.service.records import live_record

__all__ = ["CsbsClient", "FoundRecord"]


class FoundRecord(NamedTuple):
    """A replication record found for a pair: its id and, when the service said, when it
    was created (epoch seconds on this machine's clock)."""

    record_id: str
    created_at: float | None


class CsbsClient(HttpCore):
    """The CSBS v1 calls of one run. Use as ``async with CsbsClient(settings, auth) as c:``;
    a closed client cannot be reopened. ``auth=None`` sends no credentials (simulator)."""

    api_version: ClassVar[str] = "v1"
    #: Where the backups are listed, and the answer's key holding a page of them.
    items_path: ClassVar[str] = "/checkpoint_items"
    items_key: ClassVar[str] = "checkpoint_items"

    async def replicate(self, task: ReplicationTask) -> str:
        """Start copying one item to its destination region; returns the replication record id.

        A ``TransportError`` with ``maybe_applied`` means the outcome is unknown: reconcile
        with :meth:`find_replication` before sending again.
        """
        replication: dict[str, Any] = {
            "destination_region": task.destination_region,
            "destination_project_id": task.destination_project_id,
        }
        if task.name is not None:
            replication["name"] = task.name
        if task.description is not None:
            replication["description"] = task.description
        if task.enable_acceleration is not None:
            replication["enable_acceleration"] = task.enable_acceleration
        path = (
            f"/providers/{PROVIDER_ID}/checkpoint_items/"
            f"{segment(task.checkpoint_item_id)}/replicate"
        )
        data = await self._call(
            "POST",
            task.project_id,
            task.source_region,
            path,
            body=orjson.dumps({"replication": replication}),
        )
        return accepted_record_id(data)

    async def get_item(
        self, project_id: str, item_id: str, *, region: str | None = None
    ) -> dict[str, Any]:
        data = await self._get_json(project_id, region, f"/checkpoint_items/{segment(item_id)}")
        return cast("dict[str, Any]", self._field(data, "checkpoint_item", dict))

    async def iter_items(
        self,
        project_id: str,
        *,
        region: str | None = None,
        page_size: int = 1000,
        marker: str | None = None,
        **filters: str | int | bool,
    ) -> AsyncIterator[dict[str, Any]]:
        """Every item matching ``filters``, following ``marker`` until a short page (from
        after the item ``marker``, when given); a marker that loops is refused."""
        listing = self._paged(
            project_id,
            region,
            self.items_path,
            key=self.items_key,
            page_size=page_size,
            filters=filters,
            marker=marker,
        )
        async for item in listing:
            yield item

    async def count_items(
        self, project_id: str, *, region: str | None = None, **filters: str | int | bool
    ) -> int:
        query = [(k, query_value(v)) for k, v in filters.items()]
        data = await self._get_json(project_id, region, "/checkpoint_items/count", query)
        count = self._field(data, "count", int)
        return int(count)

    async def replication_records(
        self,
        project_id: str,
        *,
        region: str | None = None,
        source_item_id: str | None = None,
        destination_region: str | None = None,
        status: str | None = None,
    ) -> list[dict[str, Any]]:
        query = [
            (name, value)
            for name, value in (
                ("source_checkpoint_item_id", source_item_id),
                ("destination_region", destination_region),
                ("status", status),
            )
            if value is not None
        ]
        data = await self._get_json(project_id, region, "/replication_records", query)
        return cast("list[dict[str, Any]]", self._field(data, "replication_records", list))

    async def capabilities(
        self, project_id: str, *, region: str | None = None
    ) -> dict[str, list[str]]:
        """Source region -> the regions it may replicate to."""
        data = await self._get_json(project_id, region, "/replication_capabilities")
        return destinations_by_region(self._field(data, "regions", list))

    async def find_replication(self, task: ReplicationTask) -> str | None:
        """The id of a replication of ``task.key`` that is running or succeeded, or None
        (failed and skipped records do not count: see :mod:`orchestrator.service.records`).

        Asks the item first (its ``replication_records``), then ``/replication_records``;
        a 404 from the latter (the endpoint is unconfirmed on the real service) means "none".
        """
        found = await self.find_replication_record(task)
        return None if found is None else found.record_id

    async def find_replication_record(self, task: ReplicationTask) -> FoundRecord | None:
        """:meth:`find_replication` with the record's creation time, on this machine's clock
        (the service's ``created_at`` shifted by the offset its ``Date`` headers show)."""
        item = await self.get_item(
            task.project_id, task.checkpoint_item_id, region=task.source_region
        )
        embedded = item.get("replication_records")
        if isinstance(embedded, list):
            found = self._found(self._live(embedded, task))
            if found is not None:
                return found
        try:
            records = await self.replication_records(
                task.project_id,
                region=task.source_region,
                source_item_id=task.checkpoint_item_id,
                destination_region=task.destination_region,
            )
        except PermanentApiError as exc:
            if exc.http_status == 404:
                return None
            raise
        return self._found(self._live(records, task))

    def _live(self, records: list[Any], task: ReplicationTask) -> Mapping[str, Any] | None:
        return live_record(
            records,
            self.records,
            item_id=task.checkpoint_item_id,
            destination_region=task.destination_region,
        )

    def _found(self, record: Mapping[str, Any] | None) -> FoundRecord | None:
        if record is None:
            return None
        created = _service_time(record.get("created_at"))
        if created is not None and self._clock_offset_s is not None:
            created -= self._clock_offset_s
        return FoundRecord(str(record.get("id") or record.get("replication_record_id")), created)


def _service_time(value: object) -> float | None:
    """A CSBS timestamp (UTC, no zone: ``2017-04-18T01:21:52.701973``) as epoch seconds."""
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
