"""Every page of docs/ that ``--help`` or ``config explain`` sends a reader to exists, and so
does the section it names: a help text must not point at a page that is not there."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest

from orchestrator.cli.main import build_parser, main

REPO = Path(__file__).resolve().parents[2]
_LINK = re.compile(r"docs/[a-z0-9_-]+\.md(?:#[a-z0-9-]+)?")


def _help_texts(capsys: pytest.CaptureFixture[str]) -> str:
    parser = build_parser()
    texts = [parser.format_help()]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            texts += [sub.format_help() for sub in action.choices.values()]
    capsys.readouterr()
    assert main(["config", "explain", "--json"]) == 0
    texts += [row["help"] for row in json.loads(capsys.readouterr().out)]
    # argparse wraps long lines: a link may be split at a hyphen or a space.
    return "\n".join(re.sub(r"-\n\s+", "-", text) for text in texts)


def _anchors(page: Path) -> set[str]:
    headings = re.findall(r"^#+\s+(.+)$", page.read_text(), flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_every_docs_page_a_help_text_names_exists(capsys: pytest.CaptureFixture[str]) -> None:
    links = set(_LINK.findall(_help_texts(capsys)))
    assert links  # the help does send readers to docs/
    for link in sorted(links):
        page, _, anchor = link.partition("#")
        assert (REPO / page).is_file(), f"help names {link}: no such page"
        if anchor:
            assert anchor in _anchors(REPO / page), f"help names {link}: no such section"


def test_the_help_of_max_duration_says_in_flight_requests_get_the_grace_period() -> None:
    # A stop at --max-duration is like the first signal: requests in flight have
    # --grace-period to finish, then they are cancelled (docs/running.md); not "they finish".
    run = next(
        sub
        for action in build_parser()._actions
        if isinstance(action, argparse._SubParsersAction)
        for name, sub in action.choices.items()
        if name == "run"
    )
    text = " ".join(run.format_help().split())
    start = text.rindex("--max-duration MAX_DURATION")  # the option's entry, not the usage
    said = text[start : text.index("--grace-period GRACE", start)]
    assert "--grace-period" in said
