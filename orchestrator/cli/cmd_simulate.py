"""The `simulate` command: serve the embedded CSBS simulator."""

from __future__ import annotations

import argparse

__all__ = ["add"]


def add(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    simulate = sub.add_parser("simulate", help="serve the embedded CSBS simulator")
    from orchestrator.cli.simulate import add_arguments

    add_arguments(simulate)
    simulate.set_defaults(handler=_cmd_simulate)


def _cmd_simulate(args: argparse.Namespace) -> int:
    from orchestrator.cli.simulate import run_from_args

    return run_from_args(args)
