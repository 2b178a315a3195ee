"""The CBR v3 face of the simulator: the same estate, seen through vaults and backups.

Every backup (checkpoint item) of a project lives in that project's vault of its region;
every project also owns a vault in each region it may replicate to. Vault ids are derived
from (project, region), so that tests and demos can name them without asking
(:func:`vault_id`, or ``GET /_sim/vaults``).

Replicating goes through :meth:`Estate.replicate`: the same duplicate rule (BackupService.1009),
capability check (BackupService.1005), capacity limit and copy timeline as CSBS. The face adds
what only CBR has: the destination vault (unknown vault 404, vault of another region 400
BackupService.1013, vault of another project 400 BackupService.1011), a cap on replicas per
backup (BackupService.1012) and the operation logs. Shapes follow the official SDK's models
(``huaweicloudsdkcbr`` ``BackupResp``, ``BackupReplicateRespBody``, ``OperationLog``, ...).
Codes 1011, 1012 and 1013 are the simulator's reading of the CBR reference: 1013 in particular
stands in for whatever the real service answers for a vault in the wrong region.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final

import orjson
from aiohttp import web

from orchestrator.simulator import query
from orchestrator.simulator.cbr_views import (
    CBR_PROVIDER_ID,
    OP_STATUS,
    backup_view,
    op_log_view,
    vault_id,
)
from orchestrator.simulator.face import destination, options, start_replication
from orchestrator.simulator.faults import FaultInjector
from orchestrator.simulator.filters import RecordFilter
from orchestrator.simulator.records import Item, Record
from orchestrator.simulator.refusal import Refusal, invalid
from orchestrator.simulator.state import Estate

__all__ = ["CBR_ROUTES", "CbrFace"]

_V3: Final = "/v3/{project_id}"
REPLICATE: Final = f"POST {_V3}/backups/{{backup_id}}/replicate"
LIST_BACKUPS: Final = f"GET {_V3}/backups"
SHOW_BACKUP: Final = f"GET {_V3}/backups/{{backup_id}}"
CAPABILITIES: Final = f"GET {_V3}/replication-capabilities"
OP_LOGS: Final = f"GET {_V3}/operation-logs"
SHOW_VAULT: Final = f"GET {_V3}/vaults/{{vault_id}}"
CBR_ROUTES: Final = (REPLICATE, LIST_BACKUPS, SHOW_BACKUP, CAPABILITIES, OP_LOGS, SHOW_VAULT)

#: Copies one backup may have (successful or under way) before CBR answers 1012.
MAX_REPLICAS: Final = 8
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_OP_STATUS_BACK: Final = {v: k for k, v in OP_STATUS.items()}

_Answer = tuple[int, dict[str, Any]]
_Handler = Callable[[web.Request, bytes, str], _Answer]
_Wrap = Callable[..., Callable[[web.Request], Any]]


class CbrFace:
    """The ``/v3/{project_id}/...`` routes over an :class:`Estate`.

    ``wrap(route, handler, replicate=...)`` is the app's request wrapper (auth, throttling,
    faults, counters): the CBR face goes through exactly the same one as CSBS.
    """

    def __init__(
        self,
        estate: Estate,
        faults: FaultInjector,
        *,
        on_destination: Callable[[web.Request, str], None],
        on_replicated: Callable[[str, str], None],
        own_region: Callable[[web.Request], str | None] = lambda _: None,
    ) -> None:
        self._estate = estate
        self._own_region = own_region
        self._faults = faults
        self._on_destination = on_destination
        self._on_replicated = on_replicated
        self._vaults: dict[str, tuple[str, str]] = {}
        regions = set(estate.capabilities())
        for dests in estate.capabilities().values():
            regions.update(dests)
        owners = {p.id for p in estate.projects} | set(estate.destination_projects.values())
        for project in sorted(owners):
            for region in sorted(regions):
                self._vaults[vault_id(project, region)] = (project, region)
        # Replication record id -> the vault that received the copy.
        self._destination_vaults: dict[str, str] = {}

    def add_routes(self, add: Callable[..., Any], wrap: _Wrap) -> None:
        backups = f"{_V3}/backups"
        add(
            "POST",
            f"{backups}/{{item_id}}/replicate",
            wrap(REPLICATE, self._replicate, replicate=True),
        )
        add("GET", backups, wrap(LIST_BACKUPS, self._list_backups))
        add("GET", f"{backups}/{{item_id}}", wrap(SHOW_BACKUP, self._show_backup))
        add("GET", f"{_V3}/replication-capabilities", wrap(CAPABILITIES, self._capabilities))
        add("GET", f"{_V3}/operation-logs", wrap(OP_LOGS, self._op_logs))
        add("GET", f"{_V3}/vaults/{{vault_id}}", wrap(SHOW_VAULT, self._show_vault))

    def vaults(self) -> list[dict[str, str]]:
        """Every vault: ``{"id", "project_id", "region"}`` (``GET /_sim/vaults``)."""
        return [
            {"id": vid, "project_id": project, "region": region}
            for vid, (project, region) in sorted(self._vaults.items(), key=lambda kv: kv[1])
        ]

    # ---- handlers ---------------------------------------------------------------------

    def _replicate(self, request: web.Request, body: bytes, project_id: str) -> _Answer:
        replicate = _replicate_body(body)
        region, dest_project = destination(replicate)
        dest_vault = replicate.get("destination_vault_id")
        if not isinstance(dest_vault, str) or not _UUID.match(dest_vault):
            raise invalid("destination_vault_id is missing or invalid")
        name, description, acceleration = options(replicate)
        owner = self._vaults.get(dest_vault)
        if owner is None:
            raise Refusal(404, "BackupService.6302", f"The vault {dest_vault} does not exist.")
        if owner[1] != region:
            raise Refusal(
                400,
                "BackupService.1013",
                f"The vault {dest_vault} is in {owner[1]}, not in {region}.",
            )
        if owner[0] != dest_project:
            raise Refusal(
                400,
                "BackupService.1011",
                f"The destination project {dest_project} is not supported for vault {dest_vault}.",
            )
        self._on_destination(request, region)
        backup_id = request.match_info["item_id"]
        item = self._item(project_id, backup_id)
        now = self._estate.now()
        live = [r for r in self._estate.records_of(item) if r.blocks_duplicate(now)]
        if len(live) >= MAX_REPLICAS and all(r.destination_region != region for r in live):
            raise Refusal(400, "BackupService.1012", "The backup has too many replicas.")
        record = start_replication(
            self._estate,
            self._faults,
            project_id=item.project_id,
            item_id=item.id,
            region=region,
            destination_project=dest_project,
            name=name,
            acceleration=acceleration,
        )
        del description  # accepted and not kept, as CSBS's face does
        self._destination_vaults[record.id] = dest_vault
        self._on_replicated(backup_id, region)
        return 200, {
            "replication": {
                "backup_id": backup_id,
                "destination_project_id": dest_project,
                "destination_region": region,
                "destination_vault_id": dest_vault,
                "project_id": project_id,
                "provider_id": CBR_PROVIDER_ID,
                "replication_record_id": record.id,
                "source_region": item.region,
            }
        }

    def _list_backups(self, request: web.Request, _body: bytes, project_id: str) -> _Answer:
        page = query.paging(request.query)
        items = self._in_vault(project_id, request.query.get("vault_id"))
        flt = query.item_filter(request.query)
        if not flt.is_empty():
            items = [i for i in items if flt.matches(i)]
        start = 0
        if page.marker is not None:
            ids = [i.id for i in items]
            if page.marker not in ids:
                raise invalid(f"marker {page.marker} is not a backup of this project")
            start = ids.index(page.marker) + 1
        chosen = items[start + page.offset : start + page.offset + page.limit]
        backups = [self._backup_view(i, self._estate.now()) for i in chosen]
        return 200, {
            "backups": backups,
            "count": len(items),
            "offset": page.offset,
            "limit": page.limit,
        }

    def _show_backup(self, request: web.Request, _body: bytes, project_id: str) -> _Answer:
        item = self._item(project_id, request.match_info["item_id"])
        return 200, {"backup": self._backup_view(item, self._estate.now())}

    def _show_vault(self, request: web.Request, _body: bytes, project_id: str) -> _Answer:
        """``ShowVault``: a vault of ``project_id``. A region's own endpoint knows only that
        region's vaults, as the real regional endpoints do; the shared URL knows every
        region's (it cannot tell which region is meant)."""
        wanted = request.match_info["vault_id"]
        owner = self._vaults.get(wanted)
        own = self._own_region(request)
        if owner is None or owner[0] != project_id or (own is not None and owner[1] != own):
            raise Refusal(404, "BackupService.6302", f"The vault {wanted} does not exist.")
        return 200, {
            "vault": {
                "id": wanted,
                "name": f"vault-{owner[1]}",
                "project_id": project_id,
                "provider_id": CBR_PROVIDER_ID,
                "resources": [],
                "billing": {
                    "cloud_type": "public",
                    "consistent_level": "crash_consistent",
                    "object_type": "server",
                    "protect_type": "replication",
                    "size": 100,
                    "status": "available",
                },
                "description": "",
                "enterprise_project_id": "0",
                "created_at": "2026-01-01T00:00:00.000000",
            }
        }

    def _capabilities(self, _request: web.Request, _body: bytes, _project_id: str) -> _Answer:
        regions = [
            {"name": region, "replication_destinations": list(destinations)}
            for region, destinations in self._estate.capabilities().items()
        ]
        return 200, {"regions": regions}

    def _op_logs(self, request: web.Request, _body: bytes, project_id: str) -> _Answer:
        page = query.paging(request.query)
        wanted_type = request.query.get("operation_type")
        if wanted_type not in (None, "replication"):
            return 200, {"operation_logs": [], "count": 0, "offset": page.offset, "limit": 0}
        status = request.query.get("status")
        flt = RecordFilter(status=_OP_STATUS_BACK.get(status, status) if status else None)
        records, _ = self._estate.list_records(project_id, flt, limit=10**9)
        resource = request.query.get("resource_id")
        vault = request.query.get("vault_id")
        matching = [
            r
            for r in records
            if (resource is None or r.item.resource_id == resource)
            and (vault is None or vault_id(r.item.project_id, r.item.region) == vault)
        ]
        chosen = matching[page.offset : page.offset + page.limit]
        return 200, {
            "operation_logs": [op_log_view(r, self._estate.now()) for r in chosen],
            "count": len(matching),
            "offset": page.offset,
            "limit": page.limit,
        }

    # ---- views ------------------------------------------------------------------------

    def _item(self, project_id: str, backup_id: str) -> Item:
        try:
            return self._estate.item(project_id, backup_id)
        except Refusal:
            raise Refusal(
                404, "BackupService.1004", f"The backup {backup_id} does not exist."
            ) from None

    def _in_vault(self, project_id: str, wanted: str | None) -> list[Item]:
        items = list(self._estate.items_of(project_id))
        if wanted is None:
            return items
        return [i for i in items if vault_id(i.project_id, i.region) == wanted]

    def _backup_view(self, item: Item, now: float) -> dict[str, Any]:
        records = self._estate.records_of(item)
        share = self._estate.config.replica_share
        return backup_view(item, records, now, self._destination_vault, replica_share=share)

    def _destination_vault(self, record: Record) -> str:
        found = self._destination_vaults.get(record.id)
        return found or vault_id(record.destination_project_id, record.destination_region)


def _replicate_body(body: bytes) -> dict[str, Any]:
    try:
        parsed = orjson.loads(body)
    except ValueError:
        raise invalid("the body of replicate is not JSON") from None
    replicate = parsed.get("replicate") if isinstance(parsed, dict) else None
    if not isinstance(replicate, dict):
        raise invalid('the body must be {"replicate": {...}}')
    return replicate
