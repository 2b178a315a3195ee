"""The flags of the settings table: one argparse argument per :data:`OPTIONS` entry."""

from __future__ import annotations

import argparse

from orchestrator.config.settings import OPTIONS

__all__ = ["add_options"]


def add_options(parser: argparse.ArgumentParser, group: str) -> None:
    """Add the flags of one option group; defaults stay ``None`` so that precedence works."""
    for opt in OPTIONS:
        if opt.flag is None or opt.group != group:
            continue
        where = f" [env {opt.env}]" if opt.env else ""
        if opt.name == "verify_tls":
            parser.add_argument(
                opt.flag,
                dest=opt.name,
                action="store_const",
                const=False,
                help=f"{opt.help} (default: verify)",
            )
            continue
        parser.add_argument(
            opt.flag,
            dest=opt.name,
            type=opt.parse,
            default=None,
            metavar=opt.name.upper(),
            help=f"{opt.help} (default: {opt.default}){where}",
        )
