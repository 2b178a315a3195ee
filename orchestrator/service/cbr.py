"""The CBR v3 calls (Cloud Backup and Recovery), behind the same protocol as CSBS.

CBR is CSBS's successor: backups live in *vaults*, and a copy goes into a vault of the
destination region. The HTTP machinery (session, signing, token renewal, error mapping,
timeouts) is :class:`~orchestrator.service.http_core.HttpCore`'s, and the finding of a record
with its creation time :class:`~orchestrator.service.client.CsbsClient`'s; only paths, bodies
and the reading of answers differ. Shapes follow the official SDK (``huaweicloudsdkcbr`` 3.1,
module ``v1``):

==========================================================  ===============================
call                                                        SDK model
==========================================================  ===============================
``POST /v3/{project}/backups/{backup_id}/replicate``         ``BackupReplicateReqBody`` ->
                                                            ``BackupReplicateRespBody``
``GET /v3/{project}/backups[/{backup_id}]``                 ``BackupResp`` (+ records)
``GET /v3/{project}/replication-capabilities``              ``ShowReplicationCapabilities*``
``GET /v3/{project}/operation-logs?operation_type=...``     ``OperationLog``
==========================================================  ===============================

Records come back in the protocol's vocabulary (see :mod:`orchestrator.service.protocol`).
Following a copy reads the *operation logs* of the source backup's resource: the log of a
replication carries ``extra_info.replication.source_backup_id`` and its destination region.
That the log's id is the ``replication_record_id`` the replicate call answered is what the
simulator does and is *unconfirmed* on the real service.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import replace
from typing import Any, ClassVar, Final, cast

import orjson

from orchestrator.errors import ConfigError, PermanentApiError
from orchestrator.models import CopyWord, ReplicationTask
from orchestrator.secret_set import SecretSet
from orchestrator.service.answer import accepted_record_id, destinations_by_region
from orchestrator.service.auth import Authenticator
from orchestrator.service.client import CsbsClient
from orchestrator.service.http_core import query_value, segment
from orchestrator.service.records import cbr_word
from orchestrator.service.settings import ClientSettings

__all__ = ["CBR_ENDPOINT_TEMPLATE", "CbrClient", "cbr_settings"]

CBR_ENDPOINT_TEMPLATE: Final = "https://cbr.{region}.myhuaweicloud.com"
_CSBS_TEMPLATE: Final = ClientSettings().endpoint_template

#: Refusals of the destination vault (a vault of another region; no such vault). The
#: simulator's codes: what the real service answers is unconfirmed (docs/cbr.md).
_VAULT_CODES: Final = frozenset({"BackupService.1013", "BackupService.6302"})
_OP_LOG_PAGE: Final = 100


def cbr_settings(settings: ClientSettings) -> ClientSettings:
    """``settings`` with CBR's endpoint template where CSBS's default was left in place."""
    if settings.endpoint_template == _CSBS_TEMPLATE:
        return replace(settings, endpoint_template=CBR_ENDPOINT_TEMPLATE)
    return settings


class CbrClient(CsbsClient):
    """The CBR v3 calls of one run (``async with CbrClient(settings, auth) as c:``)."""

    api_version: ClassVar[str] = "v3"
    items_path: ClassVar[str] = "/backups"
    items_key: ClassVar[str] = "backups"

    def __init__(
        self,
        settings: ClientSettings | None = None,
        auth: Authenticator | None = None,
        *,
        secrets: SecretSet | None = None,
    ) -> None:
        super().__init__(cbr_settings(settings or ClientSettings()), auth, secrets=secrets)

    async def replicate(self, task: ReplicationTask) -> str:
        """Copy one backup into the destination vault; the replication record id."""
        if not task.destination_vault_id:
            raise ConfigError(f"backup {task.checkpoint_item_id}: CBR needs a destination_vault_id")
        body: dict[str, Any] = {
            "destination_project_id": task.destination_project_id,
            "destination_region": task.destination_region,
            "destination_vault_id": task.destination_vault_id,
        }
        if task.name is not None:
            body["name"] = task.name
        if task.description is not None:
            body["description"] = task.description
        if task.enable_acceleration is not None:
            body["enable_acceleration"] = task.enable_acceleration
        try:
            data = await self._call(
                "POST",
                task.project_id,
                task.source_region,
                f"/backups/{segment(task.checkpoint_item_id)}/replicate",
                body=orjson.dumps({"replicate": body}),
            )
        except PermanentApiError as refused:
            if refused.error_code in _VAULT_CODES:
                # Say what to fix: the service's own words name the vault, not the column.
                refused.error_msg = f"{refused.error_msg or refused}; {_vault_hint(task)}"
            raise
        return accepted_record_id(data)

    async def get_item(
        self, project_id: str, item_id: str, *, region: str | None = None
    ) -> dict[str, Any]:
        """One backup (``BackupResp``) with its ``replication_records`` in common words."""
        data = await self._get_json(project_id, region, f"/backups/{segment(item_id)}")
        backup = self._field(data, "backup", dict)
        embedded = backup.get("replication_records")
        if isinstance(embedded, list):
            backup = {**backup, "replication_records": [_from_record(r) for r in embedded]}
        return cast("dict[str, Any]", backup)

    async def count_items(
        self, project_id: str, *, region: str | None = None, **filters: str | int | bool
    ) -> int:
        query = [(k, query_value(v)) for k, v in filters.items()]
        query.append(("limit", "1"))
        data = await self._get_json(project_id, region, "/backups", query)
        return int(self._field(data, "count", int))

    async def capabilities(
        self, project_id: str, *, region: str | None = None
    ) -> dict[str, list[str]]:
        data = await self._get_json(project_id, region, "/replication-capabilities")
        return destinations_by_region(self._field(data, "regions", list))

    async def show_vault(
        self, project_id: str, vault: str, *, region: str | None = None
    ) -> dict[str, Any] | None:
        """``GET /v3/{project}/vaults/{vault}`` (``ShowVault``) at ``region``'s endpoint: the
        vault, or None when that endpoint does not know it (404). A regional endpoint knows
        only its own region's vaults, so None there means "not a vault of this project in
        this region"."""
        try:
            data = await self._get_json(project_id, region, f"/vaults/{segment(vault)}")
        except PermanentApiError as exc:
            if exc.http_status == 404:
                return None
            raise
        return cast("dict[str, Any]", self._field(data, "vault", dict))

    async def operation_logs(
        self, project_id: str, *, region: str | None = None, **filters: str | int
    ) -> AsyncIterator[dict[str, Any]]:
        """``OperationLog`` entries matching ``filters``, page after page (``offset``)."""
        query = [(k, query_value(v)) for k, v in filters.items()]
        offset = 0
        while True:
            page_query = [*query, ("limit", str(_OP_LOG_PAGE)), ("offset", str(offset))]
            data = await self._get_json(project_id, region, "/operation-logs", page_query)
            page = self._field(data, "operation_logs", list)
            for entry in page:
                if isinstance(entry, dict):
                    yield entry
            if len(page) < _OP_LOG_PAGE:
                return
            offset += len(page)

    async def replication_records(
        self,
        project_id: str,
        *,
        region: str | None = None,
        source_item_id: str | None = None,
        destination_region: str | None = None,
        status: str | None = None,
    ) -> list[dict[str, Any]]:
        """Copies as the operation logs tell them (``operation_type=replication``).

        With ``source_item_id`` the logs are narrowed to the backup's resource first (one
        ``GET /backups/{id}``), so that following one copy does not read the whole project.
        """
        filters: dict[str, str | int] = {"operation_type": "replication"}
        if source_item_id is not None:
            backup = await self.get_item(project_id, source_item_id, region=region)
            resource = backup.get("resource_id")
            if isinstance(resource, str) and resource:
                filters["resource_id"] = resource
        found: list[dict[str, Any]] = []
        async for entry in self.operation_logs(project_id, region=region, **filters):
            record = _from_op_log(entry)
            if source_item_id is not None and record["source_checkpoint_item_id"] not in (
                None,
                source_item_id,
            ):
                continue
            if destination_region is not None and record["destination_region"] not in (
                None,
                destination_region,
            ):
                continue
            if status is not None and record["status"] != status:
                continue
            found.append(record)
        return found

    async def find_replication(self, task: ReplicationTask) -> str | None:
        """A copy of ``task.key`` that has not failed: the backup's own records, then the
        operation logs."""
        backup = await self.get_item(
            task.project_id, task.checkpoint_item_id, region=task.source_region
        )
        embedded = backup.get("replication_records")
        found = _live(embedded if isinstance(embedded, list) else [], task)
        if found is not None:
            return found
        records = await self.replication_records(
            task.project_id,
            region=task.source_region,
            source_item_id=task.checkpoint_item_id,
            destination_region=task.destination_region,
        )
        return _live(records, task)


def _vault_hint(task: ReplicationTask) -> str:
    return (
        f"fix destination_vault_id {task.destination_vault_id}: it must be a vault of project "
        f"{task.destination_project_id} in {task.destination_region} (`plan --service cbr` "
        "with [connection.endpoints] checks every vault before a run)"
    )


def _from_record(raw: object) -> dict[str, Any]:
    """A ``ReplicationRecordGet`` in the protocol's words."""
    record: Mapping[str, Any] = raw if isinstance(raw, dict) else {}
    extra = record.get("extra_info")
    progress = extra.get("progress") if isinstance(extra, dict) else None
    return {
        "id": record.get("id"),
        "status": cbr_word(record.get("status")),
        "destination_region": record.get("destination_region"),
        "destination_project_id": record.get("destination_project_id"),
        "destination_vault_id": record.get("destination_vault_id"),
        "source_checkpoint_item_id": record.get("source_backup_id"),
        "destination_checkpoint_item_id": record.get("destination_backup_id"),
        "extra_info": {"progress": progress},
    }


def _from_op_log(entry: Mapping[str, Any]) -> dict[str, Any]:
    """An ``OperationLog`` of a replication in the protocol's words."""
    extra = entry.get("extra_info")
    extra = extra if isinstance(extra, dict) else {}
    replication = extra.get("replication")
    replication = replication if isinstance(replication, dict) else {}
    common = extra.get("common")
    progress = common.get("progress") if isinstance(common, dict) else None
    return {
        "id": entry.get("id"),
        "status": cbr_word(entry.get("status")),
        "destination_region": replication.get("destination_region"),
        "destination_project_id": replication.get("destination_project_id"),
        "source_checkpoint_item_id": replication.get("source_backup_id"),
        "destination_checkpoint_item_id": replication.get("destination_backup_id"),
        "extra_info": {"progress": progress},
    }


def _live(records: Iterable[Any], task: ReplicationTask) -> str | None:
    for record in records:
        if not isinstance(record, dict) or record.get("status") == CopyWord.FAIL:
            continue
        if record.get("destination_region") != task.destination_region:
            continue
        source = record.get("source_checkpoint_item_id")
        if source is not None and source != task.checkpoint_item_id:
            continue
        record_id = record.get("id")
        if isinstance(record_id, str) and record_id:
            return record_id
    return None
