"""``--help`` of every command explains each option with its default, stays import-light, and
the exit codes stay the documented contract."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.cli.main import build_parser, main
from orchestrator.exitcodes import ExitCode

REPO = Path(__file__).resolve().parents[2]
_NO_VALUE = (
    argparse._StoreTrueAction,
    argparse._StoreFalseAction,
    argparse._StoreConstAction,
    argparse._HelpAction,
    argparse._VersionAction,
)


def _commands() -> Iterator[tuple[str, argparse.ArgumentParser]]:
    parser = build_parser()
    yield "csbs-orchestrator", parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield from action.choices.items()


def test_every_command_is_listed() -> None:
    names = {name for name, _ in _commands()}
    assert {"run", "resume", "plan", "report", "track", "simulate"} <= names


@pytest.mark.parametrize(("name", "parser"), list(_commands()), ids=lambda v: str(v)[:20])
def test_every_option_help_states_its_default(name: str, parser: argparse.ArgumentParser) -> None:
    missing = []
    # One of a required group must be given (run: --manifest or --discover): no default.
    chosen = {a for g in parser._mutually_exclusive_groups if g.required for a in g._group_actions}
    for action in parser._actions:
        if not action.option_strings or isinstance(action, argparse._SubParsersAction):
            continue  # positionals: no default to state
        if action.help == argparse.SUPPRESS:
            continue
        help_text = action.help or ""
        if not help_text.strip():
            missing.append(f"{action.option_strings[0]}: no help")
        elif isinstance(action, _NO_VALUE) or action.required or action in chosen:
            continue  # a flag is off unless given; a required option has no default
        elif "default" not in help_text:
            missing.append(f"{action.option_strings[0]}: {help_text!r}")
    assert not missing, f"{name}: options whose help gives no default: {missing}"


@pytest.mark.parametrize("command", ["run", "resume", "plan", "report", "track"])
def test_help_prints_and_exits_0(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_help_imports_neither_aiohttp_nor_rich() -> None:
    probe = (
        "import sys\n"
        "from orchestrator.cli.main import main\n"
        "for argv in (['--help'], ['run', '--help'], ['track', '--help']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = sorted(m for m in ('aiohttp', 'rich', 'structlog', 'anyio') if m in sys.modules)\n"
        "print(','.join(heavy), file=sys.stderr)\n"
    )
    done = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert done.stderr.strip() == "", done.stderr
    top = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "orchestrator", "--help"],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    )
    assert "aiohttp" not in top.stderr
    assert "exit codes:" in top.stdout


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == ExitCode.USAGE
    assert "usage:" in capsys.readouterr().err


def test_exit_codes_are_a_stable_contract() -> None:
    assert {code.name: int(code) for code in ExitCode} == {
        "OK": 0,
        "INTERNAL": 1,
        "USAGE": 2,
        "FAILED": 3,
        "GAVE_UP": 4,
        "THRESHOLD": 5,
        "INTERRUPTED": 6,
        "AUTH": 7,
        "LEDGER": 8,
    }
    epilog = build_parser().epilog or ""
    for code in ExitCode:
        assert f"{int(code)} " in epilog
