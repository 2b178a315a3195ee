"""The TOML config file, read and checked: an unknown section or key is an error (a typo
would otherwise leave the default in force, unseen)."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from orchestrator.config.keys import check_keys
from orchestrator.config.options import OPTIONS
from orchestrator.errors import ConfigError

__all__ = ["known_config_keys", "load_config"]


#: Keys of the config sections that other modules read (None: that module checks them).
_OTHER_SECTIONS: Mapping[str, frozenset[str] | None] = {
    "errors": frozenset({"codes"}),
    "discover": None,
    "simulator": None,
    "schedule": frozenset(
        {
            "cron",
            "timezone",
            "state_dir",
            "keep_ledgers",
            "missed_runs",
            "max_lateness",
            "coverage",  # schedule --coverage (cli/nightly.py)
            "rpo",
        }
    ),
}


def known_config_keys() -> dict[str, frozenset[str] | None]:
    """Every section of the config file and its keys: :data:`OPTIONS` and the others."""
    known: dict[str, set[str]] = {}
    for opt in OPTIONS:
        if opt.config:
            section, key = opt.config.split(".")
            known.setdefault(section, set()).add(key)
    known["connection"].add("endpoints")  # the [connection.endpoints] table (_endpoints)
    return {**{s: frozenset(k) for s, k in known.items()}, **_OTHER_SECTIONS}


def load_config(path: str | None) -> dict[str, Any]:
    """Read a TOML config file; errors name the file and what is wrong, an unknown section
    or key included (a typo would otherwise leave the default in force, unseen)."""
    if path is None:
        return {}
    try:
        with Path(path).open("rb") as handle:
            config = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset "
            f"{exc.start}): save the config file as UTF-8"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:
        # tomllib recurses once per nested array or inline table: a file nested thousands
        # deep exhausts the stack. No real config nests more than a few levels.
        raise ConfigError(f"{path}: not valid TOML: arrays or tables nested too deeply") from None
    check_keys(config, known_config_keys(), path)
    return config
