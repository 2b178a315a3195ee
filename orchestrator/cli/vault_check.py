"""``plan --service cbr`` and ``run --service cbr``: is each destination vault a vault of its
destination project, in its destination region?

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

``run`` (and ``run --discover``) asks the same, once the preflight has proved the
credentials (a wrong key must not spend its few bad signatures on vaults) and before
anything is recorded or sent: a problem refuses the run, exit 2, naming the manifest line
and field (for discovered pairs, the config that named the vault). Unchecked vaults are
logged and the run goes on, as ``plan`` goes on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from orchestrator.engine.paced_service import Pacing, get_key
from orchestrator.engine.plan import Plan
from orchestrator.errors import ConfigError, ManifestError, OrchestratorError
from orchestrator.models import ReplicationTask
from orchestrator.service.cbr import CbrClient
from orchestrator.service.connect import Connection

__all__ = [
    "VaultCheck",
    "check_vaults",
    "refuse_wrong_task_vaults",
    "refuse_wrong_vaults",
    "vault_lines",
    "vault_vetter",
]

log = structlog.get_logger("orchestrator.cli.vault_check")


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
    return region in settings.connection.endpoints or settings.connection.endpoint is None


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


def vault_vetter(
    conn: Connection, manifest: Path | None, *, discovered: bool = False
) -> Callable[[Plan], Awaitable[None]] | None:
    """For ``JobSpec.vet_plan``: a CBR run's destination-vault check (None for CSBS)."""
    if conn.settings.connection.service != "cbr":
        return None

    async def vet(plan: Plan) -> None:
        await refuse_wrong_vaults(conn, plan, manifest, discovered=discovered)

    return vet


async def refuse_wrong_vaults(
    conn: Connection, plan: Plan, manifest: Path | None, *, discovered: bool = False
) -> None:
    """Ask every destination vault of the pairs to send; raise on the first wrong one.

    :class:`ManifestError` names the manifest line of the first pair sent to it and the field
    ``destination_vault_id``; for ``discovered`` pairs, whose vaults come from the config,
    :class:`ConfigError` names the config keys instead. Both are exit 2."""
    check = await check_vaults(conn, plan.destinations())
    first = _first_problem(check)
    if first is None:
        return
    region, vault, reason = first
    if discovered or manifest is None:
        raise _config_error(region, vault, reason)
    key = (region, f"{check.problems[0]['destination_project_id']}/{vault}")
    line = plan.first_lines({key}).get(key)
    raise ManifestError(str(manifest), line, "destination_vault_id", reason)


async def refuse_wrong_task_vaults(conn: Connection, tasks: Sequence[ReplicationTask]) -> None:
    """``discover --service cbr``: the same check of the pairs found, before the manifest is
    written; a wrong vault is the config's (:class:`ConfigError`, exit 2)."""
    if conn.settings.connection.service != "cbr":
        return
    found: dict[tuple[str, str], tuple[int, str]] = {}
    for task in tasks:
        if task.destination_vault_id:
            slot = f"{task.destination_project_id}/{task.destination_vault_id}"
            count, project = found.get((task.destination_region, slot), (0, task.project_id))
            found[(task.destination_region, slot)] = (count + 1, project)
    first = _first_problem(await check_vaults(conn, found))
    if first is not None:
        raise _config_error(*first)


def _config_error(region: str, vault: str, reason: str) -> ConfigError:
    return ConfigError(
        f"discovered pairs to {region}, vault {vault}: {reason}. That vault comes from "
        f"the config: [discover.cbr] destination_vaults or a [[discover.rules]] `to` "
        f"entry's vault_id for {region}"
    )


def _first_problem(check: VaultCheck) -> tuple[str, str, str] | None:
    """Log what could not be checked; the first problem's region, vault and reason."""
    for unchecked in check.unchecked:
        log.warning(
            "vault.unchecked",
            vault=unchecked["destination_vault_id"],
            region=unchecked["destination_region"],
            reason=unchecked["reason"],
        )
    if check.asked and not check.region_checked:
        log.info(
            "vault.region_unchecked",
            hint="one --endpoint serves every region: set [connection.endpoints] to check "
            "that each vault is in its region",
        )
    if not check.problems:
        return None
    first = check.problems[0]
    region, vault = first["destination_region"], first["destination_vault_id"]
    more = len(check.problems) - 1
    also = f"; {more} more destination vaults are wrong (`plan` lists each)" if more else ""
    return (
        region,
        vault,
        f"{first['reason']} ({first['pairs']} pairs to {region}); nothing sent{also}",
    )
