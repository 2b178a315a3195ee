"""The TOML config file, read and checked: an unknown section or key is an error (a typo
would otherwise leave the default in force, unseen)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from orchestrator.config.keys import check_keys
from orchestrator.config.options import OPTIONS, section_keys
from orchestrator.errors import ConfigError

__all__ = ["known_config_keys", "load_config"]


#: Sections whose keys the module that reads them checks, with its own message: discovery
#: (a misspelt condition would widen a rule) and the simulator (knobs it alone knows).
_CHECKED_BY_READER = frozenset({"discover", "simulator"})


def known_config_keys() -> dict[str, frozenset[str] | None]:
    """Every section of the config file and its keys, from :data:`OPTIONS` (None: the
    module that reads the section checks its keys)."""
    sections = {opt.config.split(".", 1)[0] for opt in OPTIONS if opt.config}
    return {s: None if s in _CHECKED_BY_READER else section_keys(s) for s in sorted(sections)}


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
