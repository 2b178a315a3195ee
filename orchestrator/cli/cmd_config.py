"""The `config` command: `check` (the effective settings, each with its source) and
`explain` (every setting the tool knows, from the one settings table)."""

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
    "explain": "print every setting: its config key, flag, environment variable and default",
}


def add(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    config = sub.add_parser(
        "config",
        help="check a config file and show the effective settings, each with its source",
        description="`config check`: read --config (unknown sections and keys are errors), "
        "fold it with the flags given here and the environment, and print every setting with "
        "where it came from: flag, environment, file or default. Sends nothing. Exit 0, or 2 "
        "for a config that a run would refuse. `config explain`: every setting of every "
        "section, with its config key, flag, environment variable, default and meaning.",
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
    if args.action == "explain":
        return _explain(args.json)
    return _check(args)


def _explain(as_json: bool) -> int:
    import json

    from orchestrator.cli.options import shown_default
    from orchestrator.config.options import OPTIONS

    rows = [
        {
            "key": f"[{o.config.rsplit('.', 1)[0]}] {o.config.rsplit('.', 1)[1]}"
            if o.config
            else None,
            "flag": o.flag,
            "env": o.env,
            "default": None if o.secret else o.default,
            "help": o.help,
        }
        for o in OPTIONS
    ]
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return ExitCode.OK
    lines = []
    for row in rows:
        where = "  ".join(str(row[k]) for k in ("key", "flag", "env") if row[k])
        default = "" if row["default"] is None else f"  (default {shown_default(row['default'])})"
        lines += [f"{where}{default}", f"    {row['help']}"]
    sys.stdout.write("\n".join(lines) + "\n")
    return ExitCode.OK


def _check(args: argparse.Namespace) -> int:
    import json

    from orchestrator.cli.config_vet import refuse_what_commands_would
    from orchestrator.config.config_file import load_config
    from orchestrator.config.settings import explain, resolve

    config = load_config(args.config)  # the one reading of the file for this command
    rows = explain(vars(args), os.environ, config, config_path=args.config)
    settings = resolve(vars(args), os.environ, config, config_path=args.config)
    sources = {name: source for name, _, source in rows}
    refuse_what_commands_would(args, os.environ, config, settings, sources)
    if args.json:
        doc = {name: {"value": value, "source": source} for name, value, source in rows}
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return ExitCode.OK
    table = [(name, _short(value), source) for name, value, source in rows]
    width = max(len(name) for name, _, _ in table)
    shown = max(len(value) for _, value, _ in table)
    lines = [f"{'setting':<{width}}  {'value':<{shown}}  source"]
    lines += [f"{name:<{width}}  {value:<{shown}}  {source}" for name, value, source in table]
    sys.stdout.write("\n".join(lines) + "\n")
    return ExitCode.OK


def _short(value: object) -> str:
    """A value for the table: a table or list of the file (``[[discover.rules]]``) by its
    size, so that one long value does not widen every line (``--json`` has them whole)."""
    if isinstance(value, list):
        return f"[{len(value)} entries]"
    if isinstance(value, dict):
        return f"{{{len(value)} keys}}"
    return str(value)
