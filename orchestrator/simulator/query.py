"""Query-string parsing for the list endpoints; bad values become 400 CSBS.9001."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import NamedTuple

from orchestrator.simulator.filters import (
    DEFAULT_SORT,
    SORT_KEYS,
    ItemFilter,
    RecordFilter,
    SortSpec,
)
from orchestrator.simulator.refusal import invalid

__all__ = ["Paging", "item_filter", "paging", "record_filter", "sort_spec"]

MAX_LIMIT = 1000


class Paging(NamedTuple):
    marker: str | None
    offset: int
    limit: int


def _int(query: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise invalid(f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise invalid(f"{name} must be between {low} and {high}, got {value}")
    return value


def paging(query: Mapping[str, str]) -> Paging:
    return Paging(
        marker=query.get("marker") or None,
        offset=_int(query, "offset", 0, 0, 10**9),
        limit=_int(query, "limit", MAX_LIMIT, 1, MAX_LIMIT),
    )


def _time(query: Mapping[str, str], name: str) -> float | None:
    raw = query.get(name)
    if raw is None:
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise invalid(f"{name} must be a time like 2017-04-18T01:21:52.701973") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def item_filter(query: Mapping[str, str]) -> ItemFilter:
    return ItemFilter(
        status=query.get("status"),
        name=query.get("name"),
        resource_id=query.get("resource_id"),
        resource_name=query.get("resource_name"),
        resource_type=query.get("resource_type"),
        checkpoint_id=query.get("checkpoint_id"),
        policy_id=query.get("policy_id"),
        az=query.get("az"),
        start_time=_time(query, "start_time"),
        end_time=_time(query, "end_time"),
    )


def sort_spec(query: Mapping[str, str]) -> SortSpec:
    """``sort=created_at:desc,name`` (direction defaults to asc)."""
    raw = query.get("sort")
    if not raw:
        return DEFAULT_SORT
    spec: list[tuple[str, bool]] = []
    for part in raw.split(","):
        key, _, direction = part.strip().partition(":")
        if key not in SORT_KEYS or direction not in ("", "asc", "desc"):
            raise invalid(f"invalid sort {part!r}: keys {sorted(SORT_KEYS)}, asc or desc")
        spec.append((key, direction == "desc"))
    return tuple(spec)


def record_filter(query: Mapping[str, str]) -> RecordFilter:
    # The Java SDK's name for the source item is not public; accept both spellings.
    item = query.get("checkpoint_item_id") or query.get("source_checkpoint_item_id")
    return RecordFilter(
        checkpoint_item_id=item,
        destination_region=query.get("destination_region"),
        destination_project_id=query.get("destination_project_id"),
        status=query.get("status"),
    )
