"""The embedded simulator's config for ``--simulate``: the ``[simulator]`` table of the
config file (as the context read it) with ``--sim-seed`` and ``--sim-age-days`` on top."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from orchestrator.config.settings import resolve_record
from orchestrator.errors import ConfigError

if TYPE_CHECKING:
    from orchestrator.simulator import SimulatorConfig

__all__ = ["simulator_config", "simulator_knobs"]


def simulator_knobs(args: argparse.Namespace, config: Mapping[str, Any]) -> dict[str, Any]:
    """The ``[simulator]`` rows of the settings table: ``--sim-seed`` and ``--sim-age-days``
    over the (already read) file; a knob set nowhere keeps the simulator's own default.
    Keys the table does not know are handed on too: the simulator refuses them by name."""
    section = config.get("simulator", {})
    knobs = dict(section) if isinstance(section, Mapping) else {}
    path = getattr(args, "config", None)
    for name, (value, _) in resolve_record(
        "simulator", vars(args), {}, config, config_path=path
    ).items():
        if value is not None:
            knobs[name.removeprefix("sim_")] = value
    return knobs


def simulator_config(args: argparse.Namespace, config: Mapping[str, Any]) -> SimulatorConfig:
    """The embedded simulator's config for ``--simulate``: a bad ``[simulator]`` knob (an
    unknown name, a value of the wrong type) is a configuration error, not a traceback."""
    from orchestrator.simulator import SimulatorConfig  # noqa: PLC0415 - only for --simulate

    path = getattr(args, "config", None)
    where = f"{path}: [simulator]" if path else "[simulator]"
    try:
        return SimulatorConfig.from_knobs(**simulator_knobs(args, config))
    except (ConfigError, TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None
