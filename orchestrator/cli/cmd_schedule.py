"""The `schedule` command: discover -> run -> report on a cron schedule."""

from __future__ import annotations

import argparse

from orchestrator.cli.args import (
    EPILOG,
    add_connection,
    add_discovery,
    add_logging,
    add_run_options,
)
from orchestrator.cli.context import context_of
from orchestrator.cli.options import add_options

__all__ = ["add"]


def add(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    schedule = sub.add_parser(
        "schedule",
        help="run discover -> run -> report on a cron schedule, one dated ledger per firing",
        description="Keep running and fire on a cron expression in an explicit time zone "
        "(no overlap, a missed-run policy); each firing discovers, runs into "
        "<state-dir>/ledger-YYYYMMDDTHHMMZ.jsonl and prints its summary. With --once: fire "
        "now, once, and exit with the run's code (for cron, systemd timers, Kubernetes).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    group = schedule.add_argument_group("schedule (over [schedule] in --config)")
    add_options(group, "schedule")
    add_connection(schedule)
    add_discovery(schedule)
    add_run_options(schedule)
    add_logging(schedule)
    schedule.set_defaults(handler=_cmd_schedule)


def _cmd_schedule(args: argparse.Namespace) -> int:
    from orchestrator.cli.nightly import launch_schedule

    return launch_schedule(context_of(args))
