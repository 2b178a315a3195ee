"""The `plan` command: validate a manifest and show what a run would send."""

from __future__ import annotations

import argparse

from orchestrator.cli.args import add_allow_empty, add_connection, add_logging, add_run_options
from orchestrator.cli.context import context_of

__all__ = ["add"]


def add(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    plan = sub.add_parser(
        "plan",
        help="validate a manifest and show what a run would send, per region (sends nothing)",
        description="Validate and deduplicate the manifest, check destination regions against "
        "the service's replication capabilities and the ledger for pairs already done, and "
        "estimate the run. Exit 0 when every row can be sent, 3 when some would not be.",
    )
    plan.add_argument("--manifest", required=True, help="CSV or JSON Lines manifest")
    plan.add_argument(
        "--ledger", default=None, help="ledger to count pairs already done in (default: none)"
    )
    plan.add_argument("--json", action="store_true", help="one JSON document (default: a table)")
    plan.add_argument(
        "--offline",
        action="store_true",
        help="do not ask the service for its capabilities (default: ask)",
    )
    add_allow_empty(plan)
    add_connection(plan)
    add_run_options(plan)
    add_logging(plan)
    plan.set_defaults(handler=_cmd_plan)


def _cmd_plan(args: argparse.Namespace) -> int:
    from pathlib import Path

    from orchestrator.cli.launch import open_output
    from orchestrator.cli.logs import close_logging
    from orchestrator.cli.planning import launch_plan

    ctx = context_of(args)
    open_output(ctx)
    try:
        return launch_plan(ctx, manifest=Path(args.manifest), as_json=args.json)
    finally:
        close_logging()
