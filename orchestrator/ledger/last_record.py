"""The last line of one event in a ledger, found by reading it backwards."""

from __future__ import annotations

import os
from typing import Any, Final

import orjson

from orchestrator.errors import LedgerError
from orchestrator.ledger.archive import is_compressed, open_compressed
from orchestrator.safe_file import open_regular

__all__ = ["last_record"]

_SCAN_CHUNK: Final = 1 << 20


def last_record(path: str | os.PathLike[str], event: str) -> dict[str, Any] | None:
    """The last record of the ledger whose ``event`` is ``event``, or None.

    Reads the file backwards in blocks and parses only the lines that mention the event's
    name, so finding the last ``run_started`` of a million-line ledger reads about the last
    run's lines instead of parsing every line. A candidate line that does not parse is
    passed over: this is a look-up, and whoever folds the ledger
    (:func:`~orchestrator.ledger.reader.iter_records`) reports it.
    """
    name = os.fspath(path)
    if is_compressed(name):
        return _last_streamed(name, event)
    try:
        fd = open_regular(name, os.O_RDONLY, follow=True)
        try:
            return _last_with(fd, event.encode(), event)
        finally:
            os.close(fd)
    except OSError as exc:
        raise LedgerError(f"{name}: cannot read the ledger: {exc.strerror or exc}") from exc


def _last_with(fd: int, needle: bytes, event: str) -> dict[str, Any] | None:
    end = os.fstat(fd).st_size
    carry = b""  # the start of the earliest line read so far; its beginning is not read yet
    while end > 0:
        start = max(0, end - _SCAN_CHUNK)
        block = os.pread(fd, end - start, start) + carry
        end = start
        cut = block.find(b"\n") + 1 if start else 0  # whole lines only, unless at the start
        if start and not cut:
            carry = block  # one line longer than a block
            continue
        carry, stop = block[:cut], len(block)
        while (pos := block.rfind(needle, cut, stop)) >= 0:
            first = block.rfind(b"\n", cut, pos) + 1 or cut
            last = block.find(b"\n", pos)
            try:
                record = orjson.loads(block[first : len(block) if last < 0 else last])
            except orjson.JSONDecodeError:
                record = None
            if type(record) is dict and record.get("event") == event:
                return record
            stop = first
    return None


def _last_streamed(name: str, event: str) -> dict[str, Any] | None:
    """``last_record`` of a compressed ledger: read forwards (gzip cannot seek backwards)."""
    needle, found = event.encode(), None
    try:
        fd = open_regular(name, os.O_RDONLY, follow=True)
    except OSError as exc:
        raise LedgerError(f"{name}: cannot read the ledger: {exc.strerror or exc}") from exc
    with open_compressed(os.fdopen(fd, "rb"), name) as f:
        try:
            for raw in f:
                if needle not in raw:
                    continue
                try:
                    record = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    continue
                if type(record) is dict and record.get("event") == event:
                    found = record
        except OSError as exc:
            raise LedgerError(f"{name}: cannot read the ledger: {exc.strerror or exc}") from exc
    return found
