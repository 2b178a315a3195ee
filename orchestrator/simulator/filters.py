"""What a listing asks for: the filters of ``GET /checkpoint_items`` (and ``/count``) and of
``GET /replication_records``, and the sort orders of the item listing."""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from orchestrator.simulator.records import Item, Record

__all__ = ["DEFAULT_SORT", "SORT_ATTRS", "SORT_KEYS", "ItemFilter", "RecordFilter", "SortSpec"]

SORT_KEYS = frozenset({"created_at", "updated_at", "name", "status", "protected_at", "id"})

#: ((key, descending), ...) as parsed from ``sort=created_at:desc,name:asc``.
SortSpec = tuple[tuple[str, bool], ...]
DEFAULT_SORT: SortSpec = (("created_at", True),)

SORT_ATTRS: dict[str, Callable[[Item], Any]] = {
    "created_at": operator.attrgetter("created_at"),
    "updated_at": operator.attrgetter("protected_at"),
    "protected_at": operator.attrgetter("protected_at"),
    "name": operator.attrgetter("name"),
    "status": operator.attrgetter("status"),
    "id": operator.attrgetter("id"),
}


def _microseconds(moment: float) -> int:
    return round(moment * 1_000_000)


@dataclass(frozen=True, slots=True)
class ItemFilter:
    """The query filters of ``GET /checkpoint_items`` and ``/count``; None means any."""

    status: str | None = None
    name: str | None = None
    resource_id: str | None = None
    resource_name: str | None = None
    resource_type: str | None = None
    checkpoint_id: str | None = None
    policy_id: str | None = None
    az: str | None = None
    start_time: float | None = None
    end_time: float | None = None

    def is_empty(self) -> bool:
        return self == _NO_FILTER

    def matches(self, item: Item) -> bool:  # noqa: PLR0911 - one early exit per filter
        if self.status is not None and item.status != self.status:
            return False
        if self.name is not None and self.name.lower() not in item.name.lower():
            return False
        if self.resource_id is not None and item.resource_id != self.resource_id:
            return False
        # Fuzzy, as the API reference says of both name and resource_name.
        if (
            self.resource_name is not None
            and self.resource_name.lower() not in item.resource_name.lower()
        ):
            return False
        if self.resource_type is not None and item.resource_type != self.resource_type:
            return False
        if self.checkpoint_id is not None and item.checkpoint_id != self.checkpoint_id:
            return False
        if self.policy_id is not None and item.policy_id != self.policy_id:
            return False
        if self.az is not None and item.az != self.az:
            return False
        if self.start_time is None and self.end_time is None:
            return True
        # Compared in whole microseconds: the resolution of the times the API shows.
        created = _microseconds(item.created_at)
        if self.start_time is not None and created < _microseconds(self.start_time):
            return False
        return self.end_time is None or created <= _microseconds(self.end_time)


_NO_FILTER = ItemFilter()


@dataclass(frozen=True, slots=True)
class RecordFilter:
    """The query filters of ``GET /replication_records``."""

    checkpoint_item_id: str | None = None
    destination_region: str | None = None
    destination_project_id: str | None = None
    status: str | None = None

    def matches(self, record: Record, now: float) -> bool:
        if self.checkpoint_item_id is not None and record.item.id != self.checkpoint_item_id:
            return False
        region, project = self.destination_region, self.destination_project_id
        if region is not None and record.destination_region != region:
            return False
        if project is not None and record.destination_project_id != project:
            return False
        return self.status is None or record.status(now) == self.status
