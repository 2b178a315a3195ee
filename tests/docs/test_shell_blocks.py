"""The shell examples of the docs can be pasted: in a ``sh`` block every command starts at
the left margin, and an indented line only continues the one before (after a ``\\`` or
inside an open quote). An indented line of prose is a comment that lost its ``#``: pasted,
it runs as a command (``what went wrong`` ... command not found)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.docs.test_links import ROOT, markdown_files

_BLOCK = re.compile(r"^```(?:sh|bash|shell|console)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _quote_open_after(line: str, quote: str | None) -> str | None:
    """The open quote (``'`` or ``"``) at the end of ``line``, given the one at its start."""
    escaped = False
    for char in line:
        if quote is None and char == "#" and not escaped:
            break  # the rest is a comment
        if escaped:
            escaped = False
        elif char == "\\" and quote != "'":
            escaped = True
        elif quote is None and char in "'\"":
            quote = char
        elif char == quote:
            quote = None
    return quote


def _misplaced(block: str) -> list[str]:
    """Indented lines that start a command instead of continuing one."""
    bad, quote, continued = [], None, False
    for line in block.splitlines():
        starts_command = quote is None and not continued
        if starts_command and line.strip() and line[0].isspace():
            bad.append(line)
        quote = _quote_open_after(line, quote)
        continued = quote is None and line.rstrip().endswith("\\")
    return bad


@pytest.mark.parametrize("page", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_command_of_a_shell_block_starts_at_the_margin(page: Path) -> None:
    blocks = _BLOCK.findall(page.read_text(encoding="utf-8"))
    bad = [line for block in blocks for line in _misplaced(block)]
    assert not bad, f"{page.relative_to(ROOT)}: comment without '#'? {bad}"
