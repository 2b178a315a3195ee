"""A fake clock and a fake terminal for the progress displays' tests."""

from __future__ import annotations

import io
import re

from rich.console import Console

__all__ = ["FakeClock", "fake_terminal", "screen"]

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fake_terminal() -> Console:
    """A console that thinks it is a 100-column terminal, writing into a string."""
    return Console(file=io.StringIO(), force_terminal=True, width=100)


def screen(console: Console) -> str:
    return _ANSI.sub("", console.file.getvalue())  # type: ignore[attr-defined]  # a StringIO
