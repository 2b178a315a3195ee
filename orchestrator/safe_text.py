"""Text from the service or from a file, made safe for a terminal and for a spreadsheet.

A hostile (or merely broken) service can put anything in a ``request_id``, an item id or an
error message, and a manifest or ledger can hold anything an editor wrote. Two places turn
such text into harm:

* a **terminal** interprets control characters: ``ESC[2J`` clears the screen, an OSC sequence
  retitles the window or writes a hyperlink, a bare CR overwrites the line being read.
  :func:`for_terminal` escapes every control character (C0, DEL, C1, and the bidirectional
  overrides that reorder what is shown) as ``\\xNN``/``\\uNNNN`` and caps the length.
* a **spreadsheet** runs a cell that begins with ``=``, ``+``, ``-`` or ``@`` as a formula
  (``=HYPERLINK(...)`` exfiltrates with one click), and tab or CR can start one in the next
  cell. :func:`for_csv` prefixes such a cell with ``'`` (OWASP's CSV injection advice), which
  every spreadsheet shows as text and drops from the value.

The ids this tool must send back are UUIDs: :func:`is_uuid` lets the code that reads them
refuse anything else where it enters, so that no formula or escape sequence can pass as an id.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["TERMINAL_LIMIT", "csv_row", "for_csv", "for_terminal", "is_uuid"]

#: Default cap for one service- or file-sourced string shown on a terminal.
TERMINAL_LIMIT = 500

# C0 controls, DEL, C1 controls, and the Unicode format characters that reorder or hide text
# (bidi embeddings/overrides/isolates, zero-width joiners and marks, the line/paragraph
# separators): each can make what a terminal shows differ from what the text is.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# OWASP: a cell beginning with one of these may be evaluated by a spreadsheet.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def for_terminal(text: object, limit: int = TERMINAL_LIMIT) -> str:
    """``text`` (``str()`` of it) with every control character escaped, at most about
    ``limit`` characters long (``...`` marks a cut). Printable text is left as it is."""
    value = text if isinstance(text, str) else str(text)
    cut = len(value) > limit
    if cut:
        value = value[:limit]
    if _UNSAFE.search(value):
        value = _UNSAFE.sub(_escape, value)
    return value + "..." if cut else value


def for_csv(value: object) -> object:
    """A CSV cell a spreadsheet shows as text: strings that could start a formula get a
    leading ``'``. Numbers and None pass unchanged (a negative number is not a formula)."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def csv_row(values: Iterable[object]) -> list[object]:
    """:func:`for_csv` of every cell of a row."""
    return [for_csv(value) for value in values]


def is_uuid(value: object) -> bool:
    """True for a string in the 8-4-4-4-12 hex form of the ids CSBS hands out."""
    return isinstance(value, str) and _UUID.fullmatch(value) is not None
