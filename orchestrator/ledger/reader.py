"""Reading a ledger: its records in file order, from a line boundary on, verbose.

A torn last line is skipped (the writer cuts it when it next opens the ledger), a broken line
anywhere else refused with its line number: see :func:`iter_records`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any, BinaryIO

import orjson

from orchestrator.errors import LedgerError
from orchestrator.ledger.archive import is_compressed, open_compressed
from orchestrator.ledger.compact import Expander
from orchestrator.ledger.format import SCHEMA_VERSION
from orchestrator.safe_file import open_regular

__all__ = ["LedgerReader", "iter_records"]


def iter_records(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Stream the ledger's records in file order.

    A line that does not parse is skipped when it is the last one (a crash tore it, or a
    writer is appending right now) and raises :class:`LedgerError` with its line number
    anywhere else. Blank lines are skipped.
    """
    return iter(LedgerReader(path))


class LedgerReader:
    """The records of a ledger from a line boundary on (the start, by default).

    Iterate it once, as :func:`iter_records`. Afterwards :attr:`end` is the offset just past
    the last whole line read and :attr:`lines` the number of lines before it, so that a later
    reader of the grown ledger can start there. A torn last line is not counted: the writer
    cuts it when it next opens the ledger. A last line that is a complete record without its
    newline is whole: it is folded, and the writer adds its newline.

    Compact lines come out verbose (:mod:`orchestrator.ledger.compact`) unless ``expand`` is
    False (the history's fold: it needs only what they keep, and may start mid-run). A
    ``.gz`` ledger (closed by the schedule's retention) is read through gzip; ``end`` then
    counts its uncompressed bytes.
    """

    __slots__ = ("end", "expand", "lines", "name")

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        start: int = 0,
        lines: int = 0,
        expand: bool = True,
    ) -> None:
        self.name = os.fspath(path)
        self.end = start
        self.lines = lines
        self.expand = expand

    def __iter__(self) -> Iterator[dict[str, Any]]:
        try:
            # A FIFO or device named like a ledger must not hang the reader; a symlink to a
            # ledger is fine to read (``report latest.jsonl``).
            f: BinaryIO = os.fdopen(open_regular(self.name, os.O_RDONLY, follow=True), "rb")
        except OSError as exc:
            reason = exc.strerror or exc
            raise LedgerError(f"{self.name}: cannot open the ledger: {reason}") from exc
        with f if not is_compressed(self.name) else open_compressed(f, self.name) as f:
            f.seek(self.end)
            if self.end and not self._after_a_whole_line(f):
                raise LedgerError(
                    f"{self.name}:{self.lines}: the last line read has grown since "
                    "(not a JSON line)"
                )
            records = self._records(f)
            yield from Expander(self.name)(records) if self.expand else records

    def _after_a_whole_line(self, f: BinaryIO) -> bool:
        """Whether ``end`` is still a line boundary. A record folded without its newline
        (the last line, whole but for it) ends where the writer's next open adds that newline:
        skip it, so that the line is counted once. Anything else after such a line means it
        was no whole line after all (a writer's lines always end in a newline)."""
        f.seek(self.end - 1)
        around = f.read(2)
        if around[:1] != b"\n":
            if around[1:] == b"\n":
                self.end += 1
            elif around[1:]:
                return False
        f.seek(self.end)
        return True

    def _records(self, f: BinaryIO) -> Iterator[dict[str, Any]]:
        loads = orjson.loads
        name = self.name
        lineno, end = self.lines, self.end
        try:
            for raw in f:
                lineno += 1
                try:
                    record = loads(raw)
                except orjson.JSONDecodeError as exc:
                    if not raw.strip():
                        if raw[-1:] == b"\n":
                            end += len(raw)
                        else:
                            lineno -= 1  # blanks without a newline: not a whole line yet
                        continue
                    if raw[-1:] != b"\n" or _only_blank_left(f):
                        lineno -= 1  # torn: the whole lines end before it
                        return
                    raise LedgerError(f"{name}:{lineno}: not a JSON line: {exc}") from None
                # A whole line that is JSON but not a ledger record ([1,2], 42, null, {}) is
                # no torn write: this file is not (only) a ledger, and nothing is appended.
                if type(record) is not dict:
                    raise LedgerError(
                        f"{name}:{lineno}: not a ledger line (a JSON object with 'v' and "
                        "'event' is expected): is this the right file?"
                    )
                if record.get("v") != SCHEMA_VERSION:
                    _check_version(record.get("v"), name, lineno)
                if "event" not in record:
                    raise LedgerError(f"{name}:{lineno}: not a ledger line (no 'event')")
                end += len(raw)
                yield record
        except OSError as exc:
            raise LedgerError(f"{name}:{lineno}: cannot read the ledger: {exc.strerror}") from exc
        finally:
            # A last line without its newline that parsed as a record is whole (an editor
            # dropped the newline, or a writer's line is read before its newline): it is
            # folded, and the writer adds the newline instead of cutting it. One that does
            # not parse is torn (a prefix of a record never parses) and is not counted.
            self.end, self.lines = end, lineno


def _only_blank_left(f: BinaryIO) -> bool:
    return all(not rest.strip() for rest in f)


def _check_version(version: object, name: str, lineno: int) -> None:
    if type(version) is int and version > SCHEMA_VERSION:
        raise LedgerError(
            f"{name}:{lineno}: written by a newer csbs-orchestrator (ledger schema "
            f"v{version}; this version reads v{SCHEMA_VERSION})"
        )
    raise LedgerError(f"{name}:{lineno}: not a ledger line (schema version {version!r})")
