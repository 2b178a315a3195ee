"""The `run` command: replicate every pair of a manifest (or of a discovery)."""

from __future__ import annotations

import argparse

from orchestrator.cli.args import (
    EPILOG,
    add_allow_empty,
    add_connection,
    add_discovery,
    add_logging,
    add_run_options,
)
from orchestrator.cli.context import context_of

__all__ = ["add"]


def add(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = sub.add_parser(
        "run",
        help="replicate every pair of a manifest",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = run.add_mutually_exclusive_group(required=True)
    source.add_argument("--manifest", help="CSV or JSON Lines manifest")
    source.add_argument(
        "--discover",
        action="store_true",
        help="list the estate through the API and apply the [discover] rules of --config "
        "instead of reading a manifest (see `discover`)",
    )
    run.add_argument("--ledger", required=True, help="JSON Lines ledger (appended, resumable)")
    run.add_argument(
        "--strict",
        action="store_true",
        help="refuse to send anything if any manifest row is invalid "
        "(default: send the valid rows, record the others as rejected)",
    )
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="plan only, as `plan` does: send nothing (default: off)",
    )
    run.add_argument(
        "--json",
        action="store_true",
        help="with --dry-run: the plan as one JSON document (default: a table)",
    )
    add_allow_empty(run)
    add_connection(run)
    add_discovery(run)
    add_run_options(run)
    add_logging(run)
    run.set_defaults(handler=_cmd_run)


def _cmd_run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from orchestrator.cli.launch import launch_job

    ctx = context_of(args)
    if args.discover:
        from orchestrator.cli.discovering import launch_discovered_run

        return launch_discovered_run(ctx)
    return launch_job(ctx, manifest=Path(args.manifest))
