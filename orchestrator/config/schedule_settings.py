"""The ``[schedule]`` section as a record: its rows of the settings table, resolved with the
same precedence as the run's (flags > environment > config file > defaults).

Plain values only: config sits below :mod:`orchestrator.scheduling`, whose records
(:class:`~orchestrator.scheduling.missed.MissedRunPolicy`, the cron schedule) are built from
this one by ``ScheduleOptions.from_settings`` in the CLI.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.config.settings import resolve_record

__all__ = ["ScheduleSettings"]


@dataclass(frozen=True, slots=True)
class ScheduleSettings:
    cron: str | None = None
    tz: str | None = None
    state_dir: str | None = None
    keep: int = 14
    missed_runs: str = "run_once"
    max_lateness: float = 12 * 3600.0
    once: bool = False
    coverage: bool = False
    rpo: str = "26h"
    """A duration (``26h``), read as one only when :attr:`coverage` is on."""

    @classmethod
    def resolve(
        cls,
        flags: Mapping[str, Any] | None,
        env: Mapping[str, str],
        config: Mapping[str, Any],
        *,
        config_path: str | None = None,
    ) -> ScheduleSettings:
        picked = resolve_record("schedule", flags, env, config, config_path=config_path)
        return cls(**{name: value for name, (value, _) in picked.items()})
