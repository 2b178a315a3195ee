"""JSON shapes of items and records, rendered on demand (only for the page being served)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from orchestrator.simulator.records import COPY_FAIL, ITEM_COPY_STATUS, Item, Record

__all__ = ["format_time", "item_view", "record_view"]

_COPY_FAIL_CODE = {"Code": "CSBS.9999", "Description": "Replication failed."}


def format_time(moment: float) -> str:
    """CSBS timestamps: UTC, microseconds, no zone suffix (``2017-04-18T01:21:52.701973``)."""
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


def record_view(record: Record, now: float) -> dict[str, Any]:
    status = record.status(now)
    done = status == "success"
    item = record.item
    return {
        "id": record.id,
        "source_region": item.region,
        "source_project_id": item.project_id,
        "source_checkpoint_id": item.checkpoint_id,
        "source_checkpoint_item_id": item.id,
        "destination_region": record.destination_region,
        "destination_project_id": record.destination_project_id,
        "destination_checkpoint_id": record.destination_checkpoint_id if done else "",
        "destination_checkpoint_item_id": record.destination_checkpoint_item_id if done else "",
        "status": status,
        "plan_id": "",
        "created_at": format_time(record.created_at),
        "extra_info": {
            "auto_trigger": record.auto_trigger,
            "progress": record.progress(now),
            "fail_reason": "Replication failed." if status == COPY_FAIL else "",
            "fail_code": "CSBS.9999" if status == COPY_FAIL else "",
            "destination_backup_name": record.name or f"rep_from_{item.id}",
        },
    }


def _copy_state(records: list[dict[str, Any]]) -> tuple[str, dict[str, str], str]:
    """The item's copy_status follows its newest replication (``na`` when there is none)."""
    if not records:
        return "na", {}, ""
    newest = records[-1]
    if newest["status"] == COPY_FAIL:
        return COPY_FAIL, dict(_COPY_FAIL_CODE), "Replication failed."
    # The item speaks its own vocabulary, not the record's.
    return ITEM_COPY_STATUS.get(str(newest["status"]), "na"), {}, ""


def item_view(
    item: Item, records: list[Record], now: float, *, regional: bool = False
) -> dict[str, Any]:
    """An item as ``GET /checkpoint_items`` shows it. ``regional``: served on its region's own
    endpoint, shaped as the real ones (no ``project_id``/``source_region`` fields)."""
    replication = [record_view(r, now) for r in records]
    copy_status, fail_code, fail_reason = _copy_state(replication)
    finished = item.protected_at != item.created_at
    if item.status == "error":
        fail_code = {"Code": "CSBS.6009", "Description": "Failed to create the backup."}
        fail_reason = "Failed to create the backup."
    view = {
        "id": item.id,
        "checkpoint_id": item.checkpoint_id,
        "name": item.name,
        "description": item.description,
        "resource_id": item.resource_id,
        "resource_type": item.resource_type,
        "status": item.status,
        "created_at": format_time(item.created_at),
        "updated_at": format_time(item.protected_at),
        "protected_at": format_time(item.protected_at) if finished else "",
        "expired_at": "",
        # Not in the public item schema; the simulator serves every region at one URL, so it
        # says which project and region an item belongs to.
        "project_id": item.project_id,
        "source_region": item.region,
        "backup_data": {
            "__openstack_region_name": item.region,
            "cloudservicetype": "QEMU",
            "disk": item.size_mb // 1024,
            "imagetype": "backup",
            "ram": 4096,
            "vcpus": 2,
            "eip": "",
            "private_ip": "192.168.0.10",
        },
        "extend_info": {
            "auto_trigger": item.name.startswith("autobk"),
            "average_speed": 0,
            "copy_from": "",
            "copy_status": copy_status,
            "fail_code": fail_code,
            "fail_op": "",
            "fail_reason": fail_reason,
            "finished_at": format_time(item.protected_at) if finished else "",
            "hypervisor_type": "QEMU",
            "image_type": "backup",
            "incremental": item.incremental,
            "progress": 100 if finished else 50,
            "resource_az": item.az,
            "resource_name": item.resource_name,
            "resource_type": item.resource_type,
            "size": item.size_mb,
            "space_saving_ratio": 0,
            "supported_restore_mode": "backup",
            "volume_backups": [],
        },
        "tags": [{"key": k, "value": v} for k, v in item.tags],
        "replication_records": replication,
    }
    if regional:
        del view["project_id"], view["source_region"]
    return view
