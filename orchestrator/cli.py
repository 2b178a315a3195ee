"""Command line: parse arguments, configure logging, wire the pieces. Imports lazily so that
``--help`` stays fast."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from orchestrator import __version__
from orchestrator.exitcodes import ExitCode

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="csbs-orchestrator",
        description="Replicate Huawei Cloud CSBS backups to other regions, in bulk.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return ExitCode.USAGE
    return ExitCode.OK
