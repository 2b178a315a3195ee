"""The `config check` command: the effective settings, each with its source."""

from __future__ import annotations

import argparse
import os
import sys

from orchestrator.cli.args import add_connection, add_run_options
from orchestrator.exitcodes import ExitCode

__all__ = ["ACTIONS", "add"]

#: Each action of `config` and what it does (a bare `config` lists them).
ACTIONS = {
    "check": "read --config and print every effective setting with its source",
}


def add(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    config = sub.add_parser(
        "config",
        help="check a config file and show the effective settings, each with its source",
        description="`config check`: read --config (unknown sections and keys are errors), "
        "fold it with the flags given here and the environment, and print every setting with "
        "where it came from: flag, environment, file or default. Sends nothing. Exit 0, or 2 "
        "for a config that a run would refuse.",
    )
    # Optional for argparse, so that a bare `config` gets the list of actions, not a usage line.
    config.add_argument(
        "action", nargs="?", choices=tuple(ACTIONS), help="what to do: " + ", ".join(ACTIONS)
    )
    config.add_argument("--json", action="store_true", help="one JSON document (default: a table)")
    add_connection(config, simulate=False)
    add_run_options(config)
    config.set_defaults(handler=_cmd_config)


def _cmd_config(args: argparse.Namespace) -> int:
    if args.action is None:
        listed = "; ".join(f"{name}: {what}" for name, what in ACTIONS.items())
        print(f"csbs-orchestrator config: say what to do: {listed}", file=sys.stderr)
        return ExitCode.USAGE
    return _check(args)


def _check(args: argparse.Namespace) -> int:
    import json

    from orchestrator.config.settings import explain, load_config

    config = load_config(args.config)  # the one reading of the file for this command
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
