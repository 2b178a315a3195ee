"""``--simulate`` or the real service: the connection every command that talks to CSBS uses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import TYPE_CHECKING

from orchestrator.config.settings import RunSettings
from orchestrator.service.aksk import AkSkSigner
from orchestrator.service.auth import Secret
from orchestrator.service.connect import Connection, connection

if TYPE_CHECKING:
    from orchestrator.cli.context import Context

__all__ = ["connect"]


@asynccontextmanager
async def connect(ctx: Context, settings: RunSettings | None = None) -> AsyncIterator[Connection]:
    """The real service, or with ``--simulate`` an embedded simulator for the block's life.
    ``settings``: the context's, changed by the caller (``track`` pins the ledger's service)."""
    settings = ctx.settings if settings is None else settings
    if ctx.simulator is None:
        yield await connection(settings, ctx.env, ctx.secrets)
        return
    from orchestrator.simulator import Simulator  # noqa: PLC0415 - only for --simulate

    config = ctx.simulator
    async with Simulator(config) as sim:
        # What is not given is the simulator's first project, in its region: `run --simulate
        # --discover` lists it, as `run --discover` lists --project-id in --region.
        first = sim.state.projects[0]
        simulated = replace(
            settings,
            connection=replace(
                settings.connection,
                endpoint=sim.base_url,
                endpoints=sim.region_urls,
                project_id=settings.connection.project_id or first.id,
                region=settings.connection.region or first.region,
            ),
        )
        yield Connection(simulated, AkSkSigner(config.ak, Secret(config.sk)), ctx.secrets)
