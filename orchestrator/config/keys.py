"""Refuse what a config file says that nothing reads: an unknown section or key.

A misspelt key (``[limits] concurency = 4``) or section (``[limit]``) would otherwise be
ignored in silence and the default used: the operator believes one thing, the run does
another. The message names the key, the keys that are valid there and, when one is close,
the one that was probably meant.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Mapping
from typing import Any

from orchestrator.errors import ConfigError

__all__ = ["check_keys", "did_you_mean"]


def check_keys(
    config: Mapping[str, Any], known: Mapping[str, Collection[str] | None], path: str
) -> None:
    """Raise :class:`ConfigError` for the first unknown section or key of ``config``.

    ``known`` maps each section to its keys; a section mapped to None has its keys checked
    by the module that reads it (``[discover]``, ``[simulator]``) and is not looked into.
    """
    for section, values in config.items():
        if section not in known:
            raise ConfigError(
                f"{path}: unknown section [{section}]{did_you_mean(section, known)} "
                f"(valid sections: {', '.join(sorted(known))})"
            )
        keys = known[section]
        if keys is None:
            continue
        if not isinstance(values, Mapping):
            raise ConfigError(f"{path}: [{section}] must be a table, not a single value")
        for key in values:
            if key not in keys:
                raise ConfigError(
                    f"{path}: [{section}] unknown key {key!r}{did_you_mean(key, keys)} "
                    f"(valid keys: {', '.join(sorted(keys))})"
                )


def did_you_mean(word: str, choices: Collection[str]) -> str:
    """``"; did you mean 'x'?"`` when one of ``choices`` is close to ``word``, else ``""``."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""
