"""The `config check` command: the effective settings, each with its source."""

from __future__ import annotations

import argparse
import os
import sys

from orchestrator.cli.args import add_connection, add_run_options
from orchestrator.exitcodes import ExitCode

__all__ = ["add"]


def add(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    config = sub.add_parser(
        "config",
        help="check a config file and show the effective settings, each with its source",
        description="`config check`: read --config (unknown sections and keys are errors), "
        "fold it with the flags given here and the environment, and print every setting with "
        "where it came from: flag, environment, file or default. Sends nothing. Exit 0, or 2 "
        "for a config that a run would refuse.",
    )
    config.add_argument("action", choices=("check",), help="what to do: check")
    config.add_argument("--json", action="store_true", help="one JSON document (default: a table)")
    add_connection(config, simulate=False)
    add_run_options(config)
    config.set_defaults(handler=_cmd_config)


def _cmd_config(args: argparse.Namespace) -> int:
    import json

    from orchestrator.config.settings import explain, load_config

    config = load_config(args.config)
    rows = explain(vars(args), os.environ, config, config_path=args.config)
    if args.json:
        doc = {name: {"value": value, "source": source} for name, value, source in rows}
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return ExitCode.OK
    width = max(len(name) for name, _, _ in rows)
    shown = max(len(str(value)) for _, value, _ in rows)
    lines = [f"{'setting':<{width}}  {'value':<{shown}}  source"]
    lines += [f"{name:<{width}}  {value!s:<{shown}}  {source}" for name, value, source in rows]
    sys.stdout.write("\n".join(lines) + "\n")
    return ExitCode.OK
