"""``schedule``'s own settings: the scheduler's records (the missed-run policy, the cron
schedule, the coverage RPO in seconds) projected from the ``[schedule]`` settings."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.config.schedule_settings import ScheduleSettings
from orchestrator.errors import ConfigError
from orchestrator.scheduling.cron import CronSchedule
from orchestrator.scheduling.missed import MissedRunPolicy

__all__ = ["ScheduleOptions"]


@dataclass(frozen=True, slots=True)
class ScheduleOptions:
    """``schedule`` flags over the ``[schedule]`` table of the config file."""

    cron: str | None
    tz: str | None
    state_dir: Path
    keep: int
    policy: MissedRunPolicy
    once: bool = False
    retry_failed: bool = False
    coverage_rpo_s: float | None = None
    """``--coverage``: each firing ends with coverage at this RPO (None: off)."""

    @classmethod
    def resolve(
        cls,
        args: argparse.Namespace,
        config: Mapping[str, Any],
        env: Mapping[str, str] | None = None,
    ) -> ScheduleOptions:
        """``[schedule]`` of the (already read) config file with the flags on top."""
        section = config.get("schedule", {})
        if not isinstance(section, Mapping):
            raise ConfigError(f"{args.config}: [schedule] must be a table")
        path = getattr(args, "config", None)
        settings = ScheduleSettings.resolve(vars(args), env or {}, config, config_path=path)
        return cls.from_settings(settings, retry_failed=bool(getattr(args, "retry_failed", False)))

    @classmethod
    def from_settings(cls, s: ScheduleSettings, *, retry_failed: bool = False) -> ScheduleOptions:
        """The scheduler's records from the ``[schedule]`` settings, checked together."""
        if not s.state_dir:
            raise ConfigError("schedule: --state-dir (or [schedule] state_dir) is required")
        if not s.once and (not s.cron or not s.tz):
            raise ConfigError(
                "schedule: --cron and --tz (or [schedule] cron and timezone) are required "
                "unless --once"
            )
        if s.once and (s.cron or s.tz):
            # --once does not use them, but a typo must not wait for the day it does.
            CronSchedule(s.cron or "@daily", s.tz or "UTC")
        policy = MissedRunPolicy.from_config(s.missed_runs, max_lateness_s=s.max_lateness)
        rpo = None
        if s.coverage:
            from orchestrator.cli.coverage import parse_duration  # noqa: PLC0415 - it imports us

            rpo = parse_duration(s.rpo, what="schedule rpo")
        return cls(s.cron, s.tz, Path(s.state_dir), s.keep, policy, s.once, retry_failed, rpo)

    def schedule(self) -> CronSchedule:
        if self.cron is None or self.tz is None:
            raise ConfigError("schedule: --cron and --tz are required unless --once")
        return CronSchedule(self.cron, self.tz)
