"""``--simulate`` or the real service: the connection every command that talks to CSBS uses."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from orchestrator.config.settings import RunSettings, load_config
from orchestrator.errors import ConfigError
from orchestrator.secret_set import SecretSet
from orchestrator.service.aksk import AkSkSigner
from orchestrator.service.auth import Secret
from orchestrator.service.connect import Connection, connection

if TYPE_CHECKING:
    from orchestrator.simulator import SimulatorConfig

__all__ = ["Connection", "connect", "simulator_config", "simulator_knobs"]


def simulator_knobs(args: argparse.Namespace) -> dict[str, Any]:
    """``[simulator]`` knobs of the config file, with ``--sim-seed`` (and ``--sim-age-days``) on
    top."""
    knobs = dict(load_config(args.config).get("simulator", {}))
    knobs["seed"] = args.sim_seed
    if getattr(args, "sim_age_days", None) is not None:  # coverage --sim-age-days
        knobs["age_days"] = args.sim_age_days
    return knobs


def simulator_config(args: argparse.Namespace) -> SimulatorConfig:
    """The embedded simulator's config for ``--simulate``: a bad ``[simulator]`` knob (an
    unknown name, a value of the wrong type) is a configuration error, not a traceback."""
    from orchestrator.simulator import SimulatorConfig  # noqa: PLC0415 - only for --simulate

    path = getattr(args, "config", None)
    where = f"{path}: [simulator]" if path else "[simulator]"
    try:
        return SimulatorConfig.from_knobs(**simulator_knobs(args))
    except (ConfigError, TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


@asynccontextmanager
async def connect(
    args: argparse.Namespace, settings: RunSettings, env: Mapping[str, str]
) -> AsyncIterator[Connection]:
    """The real service, or with ``--simulate`` an embedded simulator for the block's life."""
    secrets: SecretSet | None = getattr(args, "secret_set", None)  # set by open_output
    if not getattr(args, "simulate", False):
        yield await connection(settings, env, secrets)
        return
    from orchestrator.simulator import Simulator  # noqa: PLC0415 - only for --simulate

    config = simulator_config(args)
    async with Simulator(config) as sim:
        simulated = replace(
            settings,
            endpoint=sim.base_url,
            endpoints=sim.region_urls,
            project_id=settings.project_id or sim.state.projects[0].id,
        )
        yield Connection(simulated, AkSkSigner(config.ak, Secret(config.sk)), secrets)
