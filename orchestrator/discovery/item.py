"""Reading one listed item: its fields, and what it says about its copies in a region."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from orchestrator.service.records import CopyState, RecordReader

__all__ = [
    "ALREADY_REPLICATED",
    "IN_PROGRESS",
    "created_of",
    "extend_of",
    "is_replica",
    "pair_state",
    "resource_name_of",
    "resource_type_of",
    "text_of",
]

ALREADY_REPLICATED: Final = "replicated"
IN_PROGRESS: Final = "in_progress"


def text_of(value: object) -> str:
    return value if isinstance(value, str) else ""


def extend_of(item: Mapping[str, Any]) -> Mapping[str, Any]:
    extend = item.get("extend_info")
    return extend if isinstance(extend, Mapping) else {}


def is_replica(item: Mapping[str, Any]) -> bool:
    """Whether the item is itself a replica (copied into its region from another), which
    discovery never sends again (no ping-pong between regions).

    Each service says so in its own field, and both are read whatever the service:
    CBR's ``BackupResp.image_type`` is ``backup`` or ``replication`` (the CBR v3 reference
    and huaweicloudsdkcbr; its ``extend_info`` has no ``copy_from``), CSBS's
    ``extend_info.copy_from`` names the region a replica came from (and its
    ``image_type``, where given, uses the same two words)."""
    if text_of(extend_of(item).get("copy_from")):
        return True
    kinds = (item.get("image_type"), extend_of(item).get("image_type"))
    return any(text_of(kind).lower() == "replication" for kind in kinds)


def resource_name_of(item: Mapping[str, Any]) -> str:
    return text_of(item.get("resource_name")) or text_of(extend_of(item).get("resource_name"))


def resource_type_of(item: Mapping[str, Any]) -> str:
    return text_of(item.get("resource_type")) or text_of(extend_of(item).get("resource_type"))


def pair_state(
    item: Mapping[str, Any], region: str, reader: RecordReader | None = None
) -> str | None:
    """``"replicated"``, ``"in_progress"`` or None (worth sending) for one destination.

    Records speak the record vocabulary, ``extend_info.copy_status`` the item's; both are
    read by :class:`RecordReader` (a failed or skipped copy is worth sending again)."""
    reader = reader or RecordReader()
    records = item.get("replication_records")
    if isinstance(records, list):
        result: str | None = None
        for record in records:
            if not isinstance(record, Mapping) or record.get("destination_region") != region:
                continue
            state = reader.record_state(record)
            if state is CopyState.SUCCESS:
                return ALREADY_REPLICATED
            if state is CopyState.RUNNING:
                result = IN_PROGRESS  # waiting, replicating, or a word we do not know: live
        return result
    copy_state = reader.state(extend_of(item).get("copy_status"))
    return IN_PROGRESS if copy_state is CopyState.RUNNING else None


def created_of(item: Mapping[str, Any]) -> float:
    """The item's creation time as Unix seconds (the API's UTC without a zone); -inf when
    unreadable, so such an item never displaces a readable one."""
    try:
        moment = datetime.fromisoformat(text_of(item.get("created_at")))
    except ValueError:
        return float("-inf")
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
