"""Command line: the parser (one module per command, ``cli/cmd_*.py``), and the guard that
turns errors into one line and an exit code.

Every command module imports its machinery lazily inside its handler so that ``--help`` stays
fast. Errors from our exception tree become one clear line on stderr and a documented exit
code; a traceback is shown only for a bug, and only with ``--debug``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from orchestrator import __version__
from orchestrator.cli import (
    cmd_config,
    cmd_coverage,
    cmd_discover,
    cmd_plan,
    cmd_report,
    cmd_resume,
    cmd_run,
    cmd_schedule,
    cmd_simulate,
    cmd_track,
)
from orchestrator.cli.args import EPILOG
from orchestrator.exitcodes import ExitCode

__all__ = ["build_parser", "main"]

Handler = Callable[[argparse.Namespace], int]

#: In the order ``--help`` lists them.
_COMMANDS = (
    cmd_run,
    cmd_resume,
    cmd_plan,
    cmd_report,
    cmd_discover,
    cmd_schedule,
    cmd_track,
    cmd_coverage,
    cmd_config,
    cmd_simulate,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="csbs-orchestrator",
        description="Replicate Huawei Cloud CSBS backups to other regions, in bulk, "
        "with a durable ledger and resume.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in _COMMANDS:
        command.add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    words = list(sys.argv[1:] if argv is None else argv)
    _misspelt_first(parser, words)
    args, unknown = parser.parse_known_args(words)
    if unknown:
        _unknown_arguments(parser, args.command, unknown)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return ExitCode.USAGE
    return _guarded(handler, args)


def _guarded(handler: Handler, args: argparse.Namespace) -> int:
    """Run a command; our errors become one line and a documented code, never a traceback."""
    from orchestrator import errors

    known: tuple[tuple[type[BaseException], str, ExitCode], ...] = (
        (errors.ConfigError, "configuration: ", ExitCode.USAGE),
        (errors.ManifestError, "manifest: ", ExitCode.USAGE),
        (errors.LedgerError, "ledger: ", ExitCode.LEDGER),
        (errors.ScheduleError, "schedule: ", ExitCode.USAGE),
        (errors.AuthError, "", ExitCode.AUTH),
        (errors.ServiceUnreachableError, "service unreachable: ", ExitCode.GAVE_UP),
        (errors.TransportError, "service unreachable: ", ExitCode.GAVE_UP),
        (errors.TransientApiError, "the service kept failing: ", ExitCode.GAVE_UP),
        (errors.PermanentApiError, "the service refused: ", ExitCode.USAGE),
        (errors.OrchestratorError, "", ExitCode.INTERNAL),
    )
    as_json = getattr(args, "log_format", None) == "json"
    log_file: str | None = getattr(args, "log_file", None)
    try:
        return handler(args)
    except Exception as raised:
        exc = _ours_inside(raised, errors.OrchestratorError)
        for kind, prefix, code in known:
            if isinstance(exc, kind):
                return _fail(f"{prefix}{exc}", code, as_json=as_json, log_file=log_file)
        if getattr(args, "debug", False):
            raise
        return _fail(
            f"internal error ({type(exc).__name__}); re-run with --debug for details",
            ExitCode.INTERNAL,
            as_json=as_json,
            log_file=log_file,
        )
    except KeyboardInterrupt:
        return _fail("interrupted", ExitCode.INTERRUPTED, as_json=as_json, log_file=log_file)


def _ours_inside(exc: BaseException, ours: type[BaseException]) -> BaseException:
    """A task group wraps a worker's error in an ExceptionGroup (with the cancellations it
    caused): report the first of our own errors inside it as if it had been raised alone."""
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _ours_inside(inner, ours)
            if isinstance(found, ours):
                return found
    return exc


def _command_parser(
    parser: argparse.ArgumentParser, command: str | None
) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            chosen: argparse.ArgumentParser = action.choices[command]
            return chosen
    return parser


def _misspelt_first(parser: argparse.ArgumentParser, words: list[str]) -> None:
    """A misspelt flag is the error to show, before argparse's "arguments are required":
    ``run --manifst m.csv --ledger l`` must say ``--manifst`` is unknown (did you mean
    ``--manifest``?), not that ``--manifest`` is missing."""
    command = next((w for w in words if not w.startswith("-")), None)
    chosen = _command_parser(parser, command)
    if chosen is parser:
        return
    known = {f for a in chosen._actions for f in a.option_strings}
    scanned = words[: words.index("--")] if "--" in words else words
    unknown: list[str] = []
    for i, word in enumerate(scanned):
        name = word.split("=", 1)[0]
        # argparse takes an unambiguous prefix of a long flag too (--manif for --manifest).
        if word.startswith("--") and not any(flag.startswith(name) for flag in known):
            value = scanned[i + 1 : i + 2] if "=" not in word else []
            # Shown as argparse would: the unknown flag with the value the user gave it.
            unknown += [word, *(v for v in value if not v.startswith("-"))]
    if unknown:
        _unknown_arguments(parser, command, unknown)


def _unknown_arguments(
    parser: argparse.ArgumentParser, command: str | None, unknown: list[str]
) -> NoReturn:
    """Exit 2 with the command's own usage and, for a misspelt flag, the closest one."""
    import difflib

    chosen = _command_parser(parser, command)
    flags = [f for a in chosen._actions for f in a.option_strings if f.startswith("--")]
    hint = ""
    for word in unknown:
        close = difflib.get_close_matches(word.split("=", 1)[0], flags, n=1, cutoff=0.75)
        if word.startswith("--") and close:
            hint = f"; did you mean {close[0]}?"
            break
    chosen.error(f"unrecognized arguments: {' '.join(unknown)}{hint}")


def _fail(
    message: str, code: ExitCode, *, as_json: bool = False, log_file: str | None = None
) -> int:
    from orchestrator.safe_text import for_terminal

    # Messages may quote the service or a file: no escape codes through, and one screenful.
    # Our own messages may span lines (the credential chain's list): those newlines stay.
    shown = "\n".join(for_terminal(line, 2000) for line in message[:2000].split("\n"))
    cut = "..." if len(message) > 2000 else ""
    # --log-format json: stderr is a stream of JSON events (jq, a log shipper); why the
    # command ended is one more event of it, not a line of prose that breaks the stream.
    # --log-file (always JSON) gets that event too, whatever stderr's format.
    if as_json or log_file is not None:
        _fail_event(f"{shown}{cut}", code, stderr=as_json, log_file=log_file)
    if not as_json:
        print(f"csbs-orchestrator: error: {shown}{cut}", file=sys.stderr)
    return code


def _fail_event(error: str, code: ExitCode, *, stderr: bool, log_file: str | None) -> None:
    from datetime import UTC, datetime

    from orchestrator.cli.logs import write_final_event

    event = {
        "error": error,
        "exit_code": int(code),
        "event": "command.failed",
        "level": "error",
        "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    }
    write_final_event(event, stderr=stderr, log_file=log_file)
