"""``schedule``'s own settings: its flags over the ``[schedule]`` table of the config file."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
        """The ``[schedule]`` rows of the settings table, flags over the (already read)
        file over the defaults, checked together."""
        from orchestrator.config.settings import resolve_record  # noqa: PLC0415 - lazy CLI

        section = config.get("schedule", {})
        if not isinstance(section, Mapping):
            raise ConfigError(f"{args.config}: [schedule] must be a table")
        path = getattr(args, "config", None)
        picked = resolve_record("schedule", vars(args), env or {}, config, config_path=path)
        value = {name: v for name, (v, _) in picked.items()}
        if not value["state_dir"]:
            raise ConfigError("schedule: --state-dir (or [schedule] state_dir) is required")
        once = bool(value["once"])
        cron, tz = value["cron"], value["tz"]
        if not once and (not cron or not tz):
            raise ConfigError(
                "schedule: --cron and --tz (or [schedule] cron and timezone) are required "
                "unless --once"
            )
        policy = MissedRunPolicy.from_config(
            str(value["missed_runs"]), max_lateness_s=value["max_lateness"]
        )
        retry_failed = bool(getattr(args, "retry_failed", False))
        rpo = None
        if value["coverage"]:
            from orchestrator.cli.coverage import parse_duration  # noqa: PLC0415 - it imports us

            rpo = parse_duration(str(value["rpo"]), what="schedule rpo")
        keep = value["keep"]
        return cls(cron, tz, Path(value["state_dir"]), keep, policy, once, retry_failed, rpo)

    def schedule(self) -> CronSchedule:
        if self.cron is None or self.tz is None:
            raise ConfigError("schedule: --cron and --tz are required unless --once")
        return CronSchedule(self.cron, self.tz)
