"""What every command starts from: its settings, resolved once from the flags, the
environment, the --config file and (for a resumed or tracked run) what the ledger recorded."""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orchestrator.config.settings import RunSettings

__all__ = ["settings_of"]


def settings_of(args: argparse.Namespace, base: dict[str, object] | None = None) -> RunSettings:
    from orchestrator.config.settings import load_config, resolve

    config = load_config(args.config)
    if base:  # settings a ledger recorded: below the config file and everything else
        config = _merge_recorded(base, config)
    return resolve(vars(args), os.environ, config, config_path=args.config)


def _merge_recorded(recorded: dict[str, object], config: dict[str, object]) -> dict[str, object]:
    from orchestrator.config.settings import OPTIONS

    merged: dict[str, dict[str, object]] = {}
    for opt in OPTIONS:
        if opt.config and recorded.get(opt.name) is not None and not opt.secret:
            section, key = opt.config.split(".")
            merged.setdefault(section, {})[key] = recorded[opt.name]
    for section, values in config.items():
        if isinstance(values, dict):
            merged.setdefault(section, {}).update(values)
        else:
            merged[section] = values  # type: ignore[assignment]
    return dict(merged)
