"""The argument groups several commands share: logging, connection, limits and retries,
discovery filters, and the epilog with the exit codes."""

from __future__ import annotations

import argparse

__all__ = [
    "EPILOG",
    "add_allow_empty",
    "add_connection",
    "add_discovery",
    "add_logging",
    "add_pace_options",
    "add_run_options",
]

EPILOG = """exit codes: 0 ok, 2 usage/config/manifest, 3 some pairs failed, 4 some gave up on
transient errors (resume later), 5 failure threshold tripped, 6 interrupted or --max-duration
reached (resume) or `track --deadline` passed, 7 credentials refused, 8 ledger error,
1 internal error.
precedence: flags > environment > --config file > defaults."""


def add_logging(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("logging")
    group.add_argument(
        "--log-format",
        choices=("auto", "json", "console"),
        default="auto",
        help="json off a terminal, readable on one (default: auto)",
    )
    group.add_argument(
        "--log-level",
        default="info",
        choices=("debug", "info", "warning", "error"),
        help="(default: info)",
    )
    group.add_argument(
        "--log-file", default=None, help="also append JSON log lines to this file (default: none)"
    )
    group.add_argument(
        "--debug", action="store_true", help="show a traceback for unexpected errors (default: off)"
    )


def add_connection(parser: argparse.ArgumentParser, *, simulate: bool = True) -> None:
    from orchestrator.cli.options import add_options

    group = parser.add_argument_group("connection")
    group.add_argument(
        "--config", default=None, help="TOML config file, see configs/example.toml (default: none)"
    )
    add_options(group, "connection")
    if simulate:
        group.add_argument(
            "--simulate",
            action="store_true",
            help="start the embedded CSBS simulator and run against it (default: off)",
        )
        add_options(group, "simulator")  # --sim-seed


def add_allow_empty(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--allow-empty",
        action="store_true",
        help="a manifest without rows is fine, nothing to do (default: exit 2, 'no rows')",
    )


def add_run_options(parser: argparse.ArgumentParser) -> None:
    from orchestrator.cli.options import add_options

    group = parser.add_argument_group("limits, retries and stopping")
    add_options(group, "run")
    group.add_argument(
        "--retry-failed",
        action="store_true",
        help="also re-send pairs whose last result was failed (default: off)",
    )
    group.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress display even on a terminal (default: show it)",
    )


#: The settings of the pace, for commands that only look (discover, track, coverage).
_PACE_OPTIONS = frozenset({"rate", "pace", "state_file"})


def add_pace_options(parser: argparse.ArgumentParser) -> None:
    """``--rate``, ``--pace`` and ``--state-file`` for a command whose GETs are paced."""
    from orchestrator.cli.options import add_options

    group = parser.add_argument_group("pace (see docs/pace.md)")
    add_options(group, "run", only=_PACE_OPTIONS)


def add_discovery(parser: argparse.ArgumentParser) -> None:
    """Filters and a catch-all destination on top of the config's ``[discover]`` table."""
    from orchestrator.cli.options import add_options

    group = parser.add_argument_group("discovery (over [discover] in --config)")
    add_options(group, "discover")
