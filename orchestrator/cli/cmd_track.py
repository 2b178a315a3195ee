"""The `track` command: follow the copies of replicated pairs into the ledger."""

from __future__ import annotations

import argparse

from orchestrator.cli.args import add_connection, add_logging, add_pace_options
from orchestrator.cli.context import context_of

__all__ = ["add"]


def add(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    track = sub.add_parser(
        "track",
        help="follow the copies of replicated pairs until each ends, into the ledger",
        description="Poll the service for the replication record of every pair whose latest "
        "result is replicated until its copy ends (success, fail or skip) or --deadline "
        "passes, appending a copy_status line to the ledger at each change. `resume "
        "--retry-failed` sends the pairs whose copy failed again. Exit 0 when every copy "
        "succeeded, 3 when some failed, were skipped or their record is missing, 6 when the "
        "deadline passed with copies still running (they are named), "
        "7 credentials refused, 8 ledger locked or unwritable.",
    )
    track.add_argument("ledger", metavar="LEDGER", help="the ledger of the runs to follow")
    track.add_argument(
        "--interval",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="seconds between two polls of a running copy (default: 60)",
    )
    track.add_argument(
        "--deadline",
        type=float,
        default=24 * 3600.0,
        metavar="SECONDS",
        help="stop after this long, exit 6 if copies still run (default: 86400, a day; "
        "0 = until all end)",
    )
    track.add_argument(
        "--concurrency",
        dest="poll_concurrency",
        type=int,
        default=16,
        metavar="N",
        help="status requests in flight (default: 16)",
    )
    add_connection(track, simulate=False)
    add_pace_options(track)
    add_logging(track)
    track.set_defaults(handler=_cmd_track)


def _cmd_track(args: argparse.Namespace) -> int:
    from pathlib import Path

    from orchestrator.cli.launch import open_output
    from orchestrator.cli.logs import close_logging
    from orchestrator.cli.tracking import launch_track
    from orchestrator.ledger.file import last_record

    # As `resume` does: the endpoint and region the run used, under the config and flags.
    ledger = Path(args.ledger)
    started = last_record(ledger, "run_started") if ledger.exists() else None
    recorded = (started or {}).get("settings")
    ctx = context_of(args, recorded if isinstance(recorded, dict) else None)
    open_output(ctx)
    try:
        return launch_track(ctx)
    finally:
        close_logging()
