"""``--simulate`` or the real service: the connection every command that talks to CSBS uses."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

from orchestrator.config.settings import RunSettings, load_config
from orchestrator.errors import ConfigError
from orchestrator.secret_set import SecretSet
from orchestrator.service.auth import AkSkSigner, Secret
from orchestrator.service.connect import Connection, connection

__all__ = ["Connection", "connect", "simulator_knobs"]


def simulator_knobs(args: argparse.Namespace) -> dict[str, Any]:
    """``[simulator]`` knobs of the config file, with ``--sim-seed`` on top."""
    knobs = dict(load_config(args.config).get("simulator", {}))
    knobs["seed"] = args.sim_seed
    return knobs


@asynccontextmanager
async def connect(
    args: argparse.Namespace, settings: RunSettings, env: Mapping[str, str]
) -> AsyncIterator[Connection]:
    """The real service, or with ``--simulate`` an embedded simulator for the block's life."""
    secrets: SecretSet | None = getattr(args, "secret_set", None)  # set by open_output
    if not getattr(args, "simulate", False):
        yield await connection(settings, env, secrets)
        return
    from orchestrator.simulator import Simulator, SimulatorConfig  # noqa: PLC0415 - only for --simulate

    try:
        config = SimulatorConfig.from_knobs(**simulator_knobs(args))
    except TypeError as exc:
        raise ConfigError(f"{args.config}: [simulator]: {exc}") from None
    async with Simulator(config) as sim:
        simulated = replace(
            settings,
            endpoint=sim.base_url,
            endpoints=sim.region_urls,
            project_id=settings.project_id or sim.state.projects[0].id,
        )
        yield Connection(simulated, AkSkSigner(config.ak, Secret(config.sk)), secrets)
