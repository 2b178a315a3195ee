"""The `discover` command: list backups through the API, write a manifest."""

from __future__ import annotations

import argparse

from orchestrator.cli.args import add_connection, add_discovery, add_logging, add_pace_options
from orchestrator.cli.context import context_of

__all__ = ["add"]


def add(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    discover = sub.add_parser(
        "discover",
        help="list backups through the API, apply the destination rules, write a manifest",
        description="List the checkpoint items of every [[discover.sources]] entry (or of "
        "--project-id/--region), apply the [[discover.rules]] of --config, skip pairs that "
        "already have a replica or one in progress, and write the rest as a CSV manifest for "
        "`run --manifest`. Prints one summary line per source.",
    )
    discover.add_argument(
        "--output", "-o", required=True, metavar="FILE", help="the CSV manifest to write"
    )
    add_connection(discover)
    add_pace_options(discover)
    add_discovery(discover)
    add_logging(discover)
    discover.set_defaults(handler=_cmd_discover)


def _cmd_discover(args: argparse.Namespace) -> int:
    from orchestrator.cli.discovering import launch_discover

    return launch_discover(context_of(args))
