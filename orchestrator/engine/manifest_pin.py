"""The manifest pinned: the bytes pass one read, verified block by block on every later read.

A run plans from one read of the manifest and sends from another; :class:`ManifestPin` makes
the second read the same file as the first, or stops it before a changed row is used.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from itertools import islice
from typing import BinaryIO

from orchestrator.errors import ManifestChangedError

__all__ = ["PIN_BLOCK_LINES", "ManifestPin"]

#: Lines per block of a :class:`ManifestPin`: pass two checks each block against pass one's
#: digest before any of its rows is used (a block is held in memory meanwhile).
PIN_BLOCK_LINES = 1024


class ManifestPin:
    """The manifest's bytes as pass one read them: a SHA-256 of the whole file (recorded in
    ``run_started``) and one digest per block of lines.

    The first read through :meth:`lines` records; every later read verifies each block
    before handing out any of its lines, and that nothing follows the last one. A run thus
    works from the file as it was when planned, whatever happens to it meanwhile: a block
    that differs raises :class:`ManifestChangedError` before a row of it is used, so nothing
    pass one did not validate is ever sent (S3 Batch Operations pins its manifest by ETag).
    """

    __slots__ = ("_blocks", "_whole", "block_lines", "path", "sealed", "size")

    def __init__(self, path: str, block_lines: int | None = None) -> None:
        self.path = path
        self.block_lines = block_lines or PIN_BLOCK_LINES
        self._blocks: list[bytes] = []
        self._whole = hashlib.sha256()
        self.size = 0
        self.sealed = False  # a whole read was recorded

    @property
    def sha256(self) -> str:
        """Hex digest of the bytes recorded (the whole file once :attr:`sealed`)."""
        return self._whole.hexdigest()

    def lines(self, f: BinaryIO) -> Iterator[bytes]:
        """The file's lines: recorded on the first whole read, verified on every other."""
        return self._verify(f) if self.sealed else self._record(f)

    def _record(self, f: BinaryIO) -> Iterator[bytes]:
        self._blocks, self._whole, self.size = [], hashlib.sha256(), 0
        while block := list(islice(f, self.block_lines)):
            data = b"".join(block)
            self._whole.update(data)
            self.size += len(data)
            self._blocks.append(hashlib.sha256(data).digest())
            yield from block
        self.sealed = True

    def _verify(self, f: BinaryIO) -> Iterator[bytes]:
        for number, expected in enumerate(self._blocks):
            block = list(islice(f, self.block_lines))
            if hashlib.sha256(b"".join(block)).digest() != expected:
                raise self._changed(number * self.block_lines + 1)
            yield from block
        if f.read(1):
            raise self._changed(len(self._blocks) * self.block_lines + 1)

    def _changed(self, line: int) -> ManifestChangedError:
        return ManifestChangedError(
            self.path,
            line,
            None,
            f"the manifest changed during the run (planned: {self.size} bytes, sha256 "
            f"{self.sha256[:16]}...); nothing read after the change was sent",
        )
