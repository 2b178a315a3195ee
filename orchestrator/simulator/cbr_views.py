"""The CBR face's JSON: a backup (``BackupResp``) with its replication records
(``ReplicationRecordGet``), and the operation log of a copy (``OperationLog``), in the official
SDK's shapes; and the vault ids the face derives from (project, region)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Final

from orchestrator.simulator.records import (
    COPY_FAIL,
    COPY_SKIP,
    COPY_SUCCESS,
    REPLICATING,
    WAITING,
    Item,
    Record,
)
from orchestrator.simulator.views import format_time

__all__ = [
    "CBR_PROVIDER_ID",
    "OP_STATUS",
    "backup_view",
    "image_type",
    "op_log_view",
    "record_view",
    "vault_id",
]

#: CBR's provider of cloud server backups.
CBR_PROVIDER_ID: Final = "0daac4c5-6707-4851-97ba-169e36266b66"
_VAULTS: Final = uuid.UUID("6f1c0b7e-4d55-4c1e-9a35-2f0c1d5b7a10")
#: The estate's copy states in the words of CBR's operation logs.
#: A record's status -> an ``OperationLog``'s (the SDK's words: waiting, running, success,
#: failed, skipped, timeout). A backup's embedded ``ReplicationRecordGet`` keeps the record's.
OP_STATUS: Final = {
    WAITING: "waiting",
    REPLICATING: "running",
    COPY_SUCCESS: "success",
    COPY_FAIL: "failed",
    COPY_SKIP: "skipped",
}

#: Where a record's copy went (the vault its replicate call named, else the derived one).
DestinationVault = Callable[[Record], str]


def vault_id(project_id: str, region: str) -> str:
    """The id of ``project_id``'s vault in ``region`` (stable across runs)."""
    return str(uuid.uuid5(_VAULTS, f"{project_id}:{region}"))


def backup_view(
    item: Item,
    records: Sequence[Record],
    now: float,
    destination_vault: DestinationVault,
    *,
    replica_share: float = 0.0,
) -> dict[str, Any]:
    """A ``BackupResp``."""
    return {
        "checkpoint_id": item.checkpoint_id,
        "created_at": format_time(item.created_at),
        "description": item.description,
        "expired_at": None,
        "extend_info": None,
        "id": item.id,
        "image_type": image_type(item, replica_share),
        "name": item.name,
        "parent_id": None,
        "project_id": item.project_id,
        "protected_at": format_time(item.protected_at),
        "resource_az": item.az,
        "resource_id": item.resource_id,
        "resource_name": item.resource_name,
        "resource_size": max(1, item.size_mb // 1024),
        "resource_type": item.resource_type,
        "status": item.status,
        "updated_at": format_time(item.protected_at),
        "vault_id": vault_id(item.project_id, item.region),
        "replication_records": [record_view(r, now, destination_vault) for r in records],
        "enterprise_project_id": "0",
        "provider_id": CBR_PROVIDER_ID,
        "children": [],
        "incremental": item.incremental,
        "version": 1,
    }


def image_type(item: Item, replica_share: float) -> str:
    """``replication`` for a backup the face shows as a replica copied into its region (the
    ``replica_share`` knob; the real ``BackupResp.image_type`` is ``backup`` or
    ``replication``), else ``backup``. A hash of the id, so every listing agrees."""
    if replica_share <= 0:
        return "backup"
    digest = hashlib.sha256(item.id.encode()).digest()
    return "replication" if int.from_bytes(digest[:8]) < replica_share * 2**64 else "backup"


def record_view(record: Record, now: float, destination_vault: DestinationVault) -> dict[str, Any]:
    """A ``ReplicationRecordGet``."""
    status = record.status(now)
    done = status == COPY_SUCCESS
    item = record.item
    failed = status == COPY_FAIL
    return {
        "created_at": format_time(record.created_at),
        "destination_backup_id": record.destination_checkpoint_item_id if done else "",
        "destination_checkpoint_id": record.destination_checkpoint_id if done else "",
        "destination_project_id": record.destination_project_id,
        "destination_region": record.destination_region,
        "destination_vault_id": destination_vault(record),
        "extra_info": {
            "progress": record.progress(now),
            "fail_code": "BackupService.9999" if failed else "",
            "fail_reason": "Replication failed." if failed else "",
            "auto_trigger": record.auto_trigger,
            "destination_vault_id": destination_vault(record),
        },
        "id": record.id,
        "source_backup_id": item.id,
        "source_checkpoint_id": item.checkpoint_id,
        "source_project_id": item.project_id,
        "source_region": item.region,
        "status": status,  # ReplicationRecordGet speaks the record vocabulary
        "vault_id": vault_id(item.project_id, item.region),
    }


def op_log_view(record: Record, now: float) -> dict[str, Any]:
    """An ``OperationLog`` of type replication."""
    status = record.status(now)
    item = record.item
    done = status == COPY_SUCCESS
    ended = status in (COPY_SUCCESS, COPY_FAIL)
    log: dict[str, Any] = {
        "checkpoint_id": item.checkpoint_id,
        "created_at": format_time(record.created_at),
        "ended_at": format_time(record.end_at) if ended else None,
        "extra_info": {
            "common": {"progress": record.progress(now), "request_id": "", "task_id": ""},
            "replication": {
                "destination_backup_id": record.destination_checkpoint_item_id if done else "",
                "destination_checkpoint_id": record.destination_checkpoint_id if done else "",
                "destination_project_id": record.destination_project_id,
                "destination_region": record.destination_region,
                "source_backup_id": item.id,
                "source_checkpoint_id": item.checkpoint_id,
                "source_project_id": item.project_id,
                "source_region": item.region,
                "source_backup_name": item.name,
                "destination_backup_name": record.name or f"rep_from_{item.id}",
            },
        },
        "id": record.id,
        "operation_type": "replication",
        "policy_id": "",
        "project_id": item.project_id,
        "provider_id": CBR_PROVIDER_ID,
        "started_at": format_time(record.created_at),
        "status": OP_STATUS[status],
        "updated_at": format_time(min(now, record.end_at)),
        "vault_id": vault_id(item.project_id, item.region),
        "vault_name": f"vault-{item.region}",
    }
    if status == COPY_FAIL:
        log["error_info"] = {"code": "BackupService.9999", "message": "Replication failed."}
    return log
