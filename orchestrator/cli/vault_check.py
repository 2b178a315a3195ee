"""``plan --service cbr``: is each destination vault a vault of its destination project, in
its destination region?

CBR has no "which region is this vault in" field: a vault (``ShowVault``,
``GET /v3/{project}/vaults/{id}``) does not name its region. What does tell is the region's
own endpoint, which knows only that region's vaults. So each distinct (region, project,
vault) of the pairs to send is asked once at the destination region's endpoint
(``[connection.endpoints]``, else the ``https://cbr.{region}...`` template):

========================  ===========================================================
the answer                the plan
========================  ===========================================================
200, the vault's project  fine
200, another project      a problem: the vault belongs to another project
404                       a problem: no such vault of that project in that region
401/403, 5xx, no answer   unchecked (said, not a problem): e.g. credentials that may
                          replicate into the project but not read its vaults
========================  ===========================================================

With one ``--endpoint`` for every region (a proxy, the simulator's shared URL), the
endpoint cannot tell regions apart: the vault's existence and project are checked, its
region is not, and the report says so (``vault_region_checked: false``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from typing import Any

from orchestrator.cli.connection import Connection
from orchestrator.engine.paced_service import Pacing, get_key
from orchestrator.errors import OrchestratorError
from orchestrator.service.cbr import CbrClient

__all__ = ["VaultCheck", "check_vaults", "vault_lines"]


@dataclass(slots=True)
class VaultCheck:
    """What ``plan`` learnt about the destination vaults."""

    asked: int = 0
    #: Every vault was asked at its own region's endpoint (else existence only).
    region_checked: bool = True
    problems: list[dict[str, Any]] = field(default_factory=list)
    unchecked: list[dict[str, Any]] = field(default_factory=list)


def _regional(conn: Connection, region: str) -> bool:
    settings = conn.settings
    return region in settings.endpoints or settings.endpoint is None


async def check_vaults(
    conn: Connection,
    destinations: Mapping[tuple[str, str], tuple[int, str]],
    *,
    pacing: Pacing | None = None,
) -> VaultCheck:
    """Ask every distinct destination vault of ``destinations`` (``(region, "project/vault")
    -> (pairs, source project)``, see :meth:`~orchestrator.engine.plan.Plan.destinations`);
    with ``pacing``, each GET at its destination region and project's pace."""
    result = VaultCheck()
    async with conn.client() as client:
        if not isinstance(client, CbrClient):
            return result
        for (region, slot), (pairs, _) in sorted(destinations.items()):
            project, _, vault = slot.partition("/")
            if not vault:
                continue
            result.asked += 1
            result.region_checked &= _regional(conn, region)
            where = {
                "destination_region": region,
                "destination_project_id": project,
                "destination_vault_id": vault,
                "pairs": pairs,
            }
            try:
                found = await _show_vault(client, pacing, project, vault, region)
            except OrchestratorError as exc:  # ApiError, refused credentials, bad endpoint
                result.unchecked.append({**where, "reason": str(exc)[:300]})
                continue
            if found is None:
                result.problems.append(
                    {
                        **where,
                        "reason": f"{region}'s endpoint knows no vault {vault} of project "
                        f"{project}: fix destination_vault_id (a vault of that project in "
                        f"{region}; the CBR console or GET /v3/{{project}}/vaults lists them)",
                    }
                )
                continue
            owner = found.get("project_id")
            if isinstance(owner, str) and owner and owner.lower() != project.lower():
                result.problems.append(
                    {
                        **where,
                        "reason": f"vault {vault} belongs to project {owner}, not "
                        f"{project}: fix destination_vault_id or destination_project_id",
                    }
                )
    return result


async def _show_vault(
    client: CbrClient, pacing: Pacing | None, project: str, vault: str, region: str
) -> dict[str, Any] | None:
    def show() -> Awaitable[dict[str, Any] | None]:
        return client.show_vault(project, vault, region=region)

    return await (show() if pacing is None else pacing.call(get_key(project, region), show))


def vault_lines(check: VaultCheck | None) -> list[str]:
    """The plan table's lines about vaults."""
    if check is None or not check.asked:
        return []
    lines = [
        f"vault: {p['pairs']} pairs to {p['destination_region']}: {p['reason']}"
        for p in check.problems
    ]
    lines += [
        f"vault unchecked: {u['destination_vault_id']} in {u['destination_region']}: {u['reason']}"
        for u in check.unchecked
    ]
    if not check.region_checked:
        lines.append(
            "vaults: existence and project checked; region not (one --endpoint serves every "
            "region: set [connection.endpoints] to check that each vault is in its region)"
        )
    return lines
