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

__all__ = ["DEFAULT_KEEP", "ScheduleOptions"]

DEFAULT_KEEP = 14


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
    def resolve(cls, args: argparse.Namespace, config: Mapping[str, Any]) -> ScheduleOptions:
        section = config.get("schedule", {})
        if not isinstance(section, Mapping):
            raise ConfigError(f"{args.config}: [schedule] must be a table")

        def pick(flag: str, key: str, default: Any = None) -> Any:
            value = getattr(args, flag, None)
            return value if value is not None else section.get(key, default)

        state_dir = pick("state_dir", "state_dir")
        if not state_dir:
            raise ConfigError("schedule: --state-dir (or [schedule] state_dir) is required")
        keep = pick("keep", "keep_ledgers", DEFAULT_KEEP)
        if not isinstance(keep, int) or isinstance(keep, bool) or keep < 1:
            raise ConfigError(f"schedule keep_ledgers {keep!r}: must be at least 1")
        once = bool(getattr(args, "once", False))
        cron, tz = pick("cron", "cron"), pick("tz", "timezone")
        if not once and (not cron or not tz):
            raise ConfigError(
                "schedule: --cron and --tz (or [schedule] cron and timezone) are required "
                "unless --once"
            )
        policy = MissedRunPolicy.from_config(
            str(pick("missed_runs", "missed_runs", "run_once")),
            max_lateness_s=float(pick("max_lateness", "max_lateness", 12 * 3600)),
        )
        retry_failed = bool(getattr(args, "retry_failed", False))
        rpo = None
        if getattr(args, "coverage", False) or section.get("coverage", False) is True:
            from orchestrator.cli.coverage import parse_duration  # noqa: PLC0415 - it imports us

            rpo = parse_duration(str(pick("rpo", "rpo", "26h")), what="schedule rpo")
        return cls(cron, tz, Path(state_dir), keep, policy, once, retry_failed, rpo)

    def schedule(self) -> CronSchedule:
        if self.cron is None or self.tz is None:
            raise ConfigError("schedule: --cron and --tz are required unless --once")
        return CronSchedule(self.cron, self.tz)
