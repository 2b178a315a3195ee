"""A ledger line a crash tore while it was being appended, cut when the ledger is next
opened for writing (:func:`~orchestrator.ledger.opening.open_locked`)."""

from __future__ import annotations

import os
from typing import Final

import orjson

__all__ = ["cut_torn_tail"]

_TAIL_CHUNK: Final = 65536


def cut_torn_tail(fd: int) -> int:
    """If the file does not end in a newline, truncate it after its last newline; then, if
    its last line that is not blank is no JSON at all, truncate it before that line.

    The cut bytes are a line a crash tore while it was being appended; it was never
    durable, so nobody was told it was written, and readers skip it (:class:`LedgerReader`
    skips a last line that does not parse, newline or not). Left there, the next lines
    appended would make it a broken line in the middle, refused by every later load.
    Returns how many bytes were cut.
    """
    size = os.fstat(fd).st_size
    cut = _cut_unterminated(fd, size)
    start = _last_line_start(fd, size - cut)
    if start is not None:
        os.ftruncate(fd, start)
        cut = size - start
    return cut


def _last_line_start(fd: int, size: int) -> int | None:
    """Where the last line that is not blank starts, if it does not parse as JSON (what a
    reader skips as torn); None if there is no such line or it parses."""
    end, carry = size, b""
    while end > 0:
        start = max(0, end - _TAIL_CHUNK)
        block = os.pread(fd, end - start, start) + carry
        end = start
        text = block.rstrip()  # blank lines (and the newline) after the last line
        newline = text.rfind(b"\n")
        if newline < 0 and start > 0 and text:
            carry = block  # the last line goes on before this block
            continue
        if not text:
            carry = b""
            continue  # only blanks so far: look further back
        line = text[newline + 1 :]
        try:
            orjson.loads(line)
        except orjson.JSONDecodeError:
            return start + newline + 1
        return None
    return None


def _cut_unterminated(fd: int, size: int) -> int:
    """If the file does not end in a newline, truncate it after its last newline (or add the
    newline to a complete record that only lacks it). Returns how many bytes were cut."""
    if size == 0:
        return 0
    if os.pread(fd, 1, size - 1) == b"\n":
        return 0
    if _whole_record(os.pread(fd, _TAIL_CHUNK, max(0, size - _TAIL_CHUNK))):
        os.write(fd, b"\n")  # a complete record that only lacks its newline: keep it
        return 0
    keep, end = 0, size
    while end > 0:
        start = max(0, end - _TAIL_CHUNK)
        newline = os.pread(fd, end - start, start).rfind(b"\n")
        if newline >= 0:
            keep = start + newline + 1
            break
        end = start
    os.ftruncate(fd, keep)
    return size - keep


def _whole_record(tail: bytes) -> bool:
    """Whether the text after the last newline of ``tail`` is a complete ledger record."""
    line = tail[tail.rfind(b"\n") + 1 :]
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:
        return False
    return type(record) is dict and "v" in record and "event" in record
