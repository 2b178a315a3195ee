"""What every command starts from: one :class:`Context`, built once per command.

It holds the --config file as read (once: every consumer takes this mapping, none reads the
file again), the settings resolved from the flags, the environment, that file and (for a
resumed or tracked run) what the ledger recorded, the embedded simulator's config for
``--simulate``, and the secrets the log redactor scrubs (the client adds the tokens it
learns to the very same set).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from orchestrator.cli.simulated import simulator_config
from orchestrator.secret_set import SecretSet

if TYPE_CHECKING:
    from orchestrator.config.settings import RunSettings
    from orchestrator.simulator import SimulatorConfig

__all__ = ["Context", "context_of", "secrets_of"]

#: The environment variables that hold credentials (the credential chain's, docs/credentials.md).
_SECRET_ENV = (
    "HUAWEICLOUD_SDK_SK",
    "HUAWEICLOUD_SDK_AK",
    "HUAWEICLOUD_SDK_SECURITY_TOKEN",
    "CSBS_AUTH_TOKEN",
    "CSBS_IAM_PASSWORD",
)


@dataclass(frozen=True, slots=True)
class Context:
    """One command's parsed flags, environment, config file, settings, simulator and secrets."""

    args: argparse.Namespace
    env: Mapping[str, str]
    config: Mapping[str, Any]
    """The --config file, read and checked once ({} without one)."""
    settings: RunSettings
    secrets: SecretSet
    """Every secret this process knows: the log redactor's, and the client's (which adds the
    tokens it learns)."""
    simulator: SimulatorConfig | None = None
    """The embedded simulator's config with ``--simulate``; None otherwise."""

    @property
    def config_path(self) -> str | None:
        path = getattr(self.args, "config", None)
        return None if path is None else str(path)


def context_of(
    args: argparse.Namespace,
    recorded: Mapping[str, object] | None = None,
    *,
    env: Mapping[str, str] | None = None,
) -> Context:
    """Read --config once and resolve everything a command needs from it. ``recorded``: the
    settings a ledger's ``run_started`` line kept, below the config file and everything else."""
    from orchestrator.config.config_file import load_config
    from orchestrator.config.settings import resolve

    environ: Mapping[str, str] = os.environ if env is None else env
    path = getattr(args, "config", None)
    config = load_config(path)
    merged = _merge_recorded(dict(recorded), config) if recorded else config
    settings = resolve(vars(args), environ, merged, config_path=path)
    _check_error_codes(settings, path)
    simulator = simulator_config(args, config) if getattr(args, "simulate", False) else None
    extra = [simulator.sk, simulator.password] if simulator is not None else []
    secrets = SecretSet(secrets_of(settings, environ, extra))
    return Context(args, environ, config, settings, secrets, simulator)


def _check_error_codes(settings: RunSettings, path: str | None) -> None:
    """``[errors.codes]`` is checked when the client is built, where the file is not known:
    check it here, to name the file (and before any command does any work)."""
    from orchestrator.errors import ConfigError, ErrorTable

    try:
        ErrorTable.with_overrides(settings.errors.error_codes)
    except ConfigError as exc:
        raise ConfigError(f"{path}: [errors.codes]: {exc}" if path else str(exc)) from None


def secrets_of(settings: RunSettings, env: Mapping[str, str], extra: list[str]) -> list[str]:
    """Every secret value this process knows, for the log redactor."""
    values = [env.get(name, "") for name in _SECRET_ENV]
    values += [settings.auth.iam_password or "", *extra]
    return [v for v in values if v]


def _merge_recorded(recorded: dict[str, object], config: Mapping[str, Any]) -> dict[str, Any]:
    from orchestrator.config.options import RUN_OPTIONS

    merged: dict[str, Any] = {}
    # The scalar settings only: the endpoints table and the error codes come from the file
    # and the flags of this command, never from what an earlier run recorded.
    for opt in RUN_OPTIONS:
        if opt.config and recorded.get(opt.name) is not None and not opt.secret:
            section, key = opt.config.split(".")
            merged.setdefault(section, {})[key] = recorded[opt.name]
    for section, values in config.items():
        if isinstance(values, dict):
            merged.setdefault(section, {}).update(values)
        else:
            merged[section] = values
    return merged
