"""The flags of the settings table: one argparse argument per :data:`OPTIONS` row that has
a flag, for the commands of its group."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from orchestrator.config.options import OPTIONS

__all__ = ["add_options", "shown_default"]


def add_options(
    parser: argparse._ActionsContainer, group: str, *, only: frozenset[str] | None = None
) -> None:
    """Add the flags of one option group (``only``: just these settings of it); defaults
    stay ``None`` so that precedence works (a flag not given leaves the environment, the
    file or the default in force)."""
    for opt in OPTIONS:
        if opt.flag is None or opt.group != group or (only is not None and opt.name not in only):
            continue
        where = f" [env {opt.env}]" if opt.env else ""
        if opt.const is not None:
            shown = "" if "default:" in opt.help else " (default: verify)"
            parser.add_argument(
                opt.flag,
                dest=opt.name,
                action="store_const",
                const=opt.const,
                help=f"{opt.help}{shown}",
            )
            continue
        default = "" if "default:" in opt.help else f" (default: {shown_default(opt.default)})"
        parser.add_argument(
            opt.flag,
            dest=opt.name,
            type=_flag_type(opt.parse),
            default=None,
            action="append" if opt.append else "store",
            choices=opt.choices,
            metavar=_metavar(opt.name, opt.metavar, opt.choices),
            help=f"{opt.help}{default}{where}",
        )


def _metavar(name: str, metavar: str | None, choices: tuple[str, ...] | None) -> str | None:
    if metavar is not None:
        return metavar
    if choices is not None:
        return None  # argparse shows {a,b}
    return name.upper()


def shown_default(default: Any) -> str:
    """A default as the docs and the config file spell it: none, true/false, 64, 0.5."""
    if default is None:
        return "none"
    if isinstance(default, bool):
        return "true" if default else "false"
    if isinstance(default, float) and default.is_integer():
        return str(int(default))
    return str(default)


def _flag_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """argparse names the type function in its message ("invalid _positive_int value"):
    say what is wrong instead."""

    def flag_value(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{exc} (got {text!r})") from None

    return flag_value
