"""One row of the settings table (:data:`~orchestrator.config.options.OPTIONS`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from orchestrator.config.parsers import as_is

__all__ = ["RECORDS", "Option"]

#: What the resolved rows become: the run's settings, and the three other sections' records.
RECORDS = ("run", "schedule", "discover", "simulator")


@dataclass(frozen=True, slots=True)
class Option:
    """One setting: where it may come from and how to parse it."""

    name: str
    """The attribute of its record, and the flag's argparse dest. A "run" row's record is
    the section of :class:`~orchestrator.config.settings.RunSettings` its config key names
    (``limits.concurrency``: ``settings.limits.concurrency``)."""
    flag: str | None
    parse: Callable[[str], Any]
    """Text (a flag, an environment variable, a scalar of the file) to a value, or a
    ``ValueError``; :func:`~orchestrator.config.parsers.as_is` hands a file's value (a
    table, a list) to the module that reads it."""
    default: Any
    help: str
    env: str | None = None
    config: str | None = None  # "section.key" in the TOML file
    secret: bool = False
    group: str = "run"
    """Which commands take the flag: "run", "connection", "schedule", "discover", "coverage"
    (:func:`orchestrator.cli.options.add_options`)."""
    record: str = "run"
    """The record it resolves into: one of :data:`RECORDS`."""
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    """The flag's accepted values (argparse checks them; the file's value is checked by the
    module that reads it)."""
    const: Any = None
    """Not None: the flag takes no value and sets this one (``--insecure``, ``--coverage``)."""
    append: bool = False
    """The flag may be repeated; its values are a list (``--to``)."""

    @property
    def file_value_as_is(self) -> bool:
        """The file's value goes unparsed to the module that reads it: a table or a list,
        or a ``[discover]``/``[simulator]`` key (discovery and the simulator check those)."""
        return self.parse is as_is or self.record in ("discover", "simulator")
