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
    group.add_argument(
        "--cron",
        default=None,
        help="five-field cron expression or @daily (default: [schedule] cron of --config)",
    )
    group.add_argument(
        "--tz",
        default=None,
        help="IANA time zone of --cron, e.g. Europe/Berlin (default: [schedule] timezone)",
    )
    group.add_argument(
        "--state-dir",
        default=None,
        help="lock, schedule state and the dated ledgers (default: [schedule] state_dir)",
    )
    group.add_argument("--keep", type=int, default=None, help="dated ledgers to keep (default: 14)")
    group.add_argument(
        "--missed-runs",
        choices=("run_once", "skip"),
        default=None,
        help="after downtime: one catch-up run, or wait for the next time (default: run_once)",
    )
    group.add_argument(
        "--max-lateness",
        type=float,
        default=None,
        metavar="SECONDS",
        help="run_once does not catch up a firing older than this (default: 43200)",
    )
    group.add_argument(
        "--once", action="store_true", help="fire now, once, then exit (default: keep running)"
    )
    group.add_argument(
        "--coverage",
        action="store_true",
        help="end each firing with `coverage`: its table, and its gauges in --metrics-file "
        "(default: [schedule] coverage, else off)",
    )
    group.add_argument(
        "--rpo",
        default=None,
        metavar="DURATION",
        help="RPO of --coverage, e.g. 26h (default: [schedule] rpo, else 26h)",
    )
    add_connection(schedule)
    add_discovery(schedule)
    add_run_options(schedule)
    add_logging(schedule)
    schedule.set_defaults(handler=_cmd_schedule)


def _cmd_schedule(args: argparse.Namespace) -> int:
    from orchestrator.cli.nightly import launch_schedule

    return launch_schedule(context_of(args))
