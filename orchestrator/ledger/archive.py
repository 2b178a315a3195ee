"""Closed ledgers, gzip-compressed: the schedule's retention keeps them small, readers read them.

A schedule writes one dated ledger per firing (``ledger-YYYYMMDDTHHMMZ.jsonl``) and keeps the
newest ``keep_ledgers``. After a firing, :func:`compress_closed` gzips every kept dated ledger
of at least 4 KiB but the newest and the one in use (``ledger-....jsonl.gz``, about a tenth
of the size), and deletes the dated ledgers, compressed or not, beyond ``keep``. A ledger is
compressed under its ``flock`` (a run or resume writing it is left alone), written to a
temporary file, fsynced and renamed, and only then is the plain ledger (and its snapshot)
deleted: a crash leaves one of the two, whole.

Readers (``ledger.file.iter_records``, ``LedgerReader``, ``last_record``: so ``report``,
``coverage`` and ``resume``'s look at the last run) read a ``.gz`` ledger transparently. A
compressed ledger is never appended to: a writer refuses it, and refuses a plain name whose
``.gz`` sits beside it (a new empty ledger there would forget every pair done): decompress
it first (``gunzip``), then resume it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import gzip
import os
import re
import shutil
import zlib
from pathlib import Path
from typing import BinaryIO, Final

from orchestrator.atomic_file import fsync_directory
from orchestrator.errors import LedgerError
from orchestrator.safe_file import PRIVATE, NotRegularFileError, open_or_create, open_regular

__all__ = [
    "SUFFIX",
    "compress_closed",
    "compress_ledger",
    "is_compressed",
    "open_compressed",
    "refuse_compressed",
]

SUFFIX: Final = ".gz"
_DATED: Final = re.compile(r"^ledger-\d{8}T\d{4}Z\.jsonl(\.gz)?$")
_CHUNK: Final = 1 << 20
#: A ledger smaller than this stays plain: gzip would save next to nothing.
MIN_SIZE: Final = 4096


def is_compressed(path: str | os.PathLike[str]) -> bool:
    return os.fspath(path).endswith(SUFFIX)


class _GzipLedger(gzip.GzipFile):
    """A gzip reader that closes the file under it and reports a truncated or corrupt stream
    as an OSError, as a read error of a plain ledger is."""

    def __init__(self, raw: BinaryIO, name: str) -> None:
        super().__init__(fileobj=raw, mode="rb")
        self._raw = raw
        self._ledger = name

    def read(self, size: int | None = -1) -> bytes:
        try:
            return super().read(size)
        except (EOFError, zlib.error) as exc:
            raise OSError(errno.EIO, f"corrupt or truncated gzip ({exc})") from None

    def readline(self, size: int | None = -1) -> bytes:
        try:
            return super().readline(size)
        except (EOFError, zlib.error) as exc:
            raise OSError(errno.EIO, f"corrupt or truncated gzip ({exc})") from None

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        try:
            return super().seek(offset, whence)
        except (EOFError, zlib.error) as exc:
            raise OSError(errno.EIO, f"corrupt or truncated gzip ({exc})") from None

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._raw.close()


def open_compressed(raw: BinaryIO, name: str) -> BinaryIO:
    """``raw`` (an open ``.gz`` ledger) decompressed; closing it closes ``raw``."""
    return _GzipLedger(raw, name)  # type: ignore[return-value] # a BinaryIO in all we use


def refuse_compressed(path: str | os.PathLike[str]) -> None:
    """Raise LedgerError if a writer must not append at ``path``: it is compressed, or its
    compressed form sits beside a missing plain file."""
    name = os.fspath(path)
    if is_compressed(name):
        plain = name[: -len(SUFFIX)]
        raise LedgerError(
            f"{name}: a compressed ledger is never appended to: decompress it first "
            f"(gunzip {name}), then use --ledger {plain}"
        )
    if not os.path.lexists(name) and os.path.lexists(name + SUFFIX):
        raise LedgerError(
            f"{name}: this ledger was compressed into {name}{SUFFIX} (the schedule's "
            f"retention); decompress it first (gunzip {name}{SUFFIX}) so that the pairs it "
            "records are not sent again"
        )


def compress_ledger(path: Path) -> bool:
    """Gzip ``path`` into ``path.gz`` and delete it (and its snapshot), under its lock.

    Returns False, touching nothing, when another process holds the ledger (a run or a
    resume writing it) or it is gone; raises LedgerError when it cannot be compressed (the
    plain ledger is then left as it was)."""
    try:
        fd = open_regular(path, os.O_RDONLY)
    except (FileNotFoundError, NotRegularFileError):
        return False
    except OSError as exc:
        raise LedgerError(f"{path}: cannot open to compress: {exc.strerror or exc}") from exc
    target = Path(f"{path}{SUFFIX}")
    partial = Path(f"{path}{SUFFIX}.partial")
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        try:
            out_fd, _ = open_or_create(
                partial, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC, mode=PRIVATE
            )
            with os.fdopen(out_fd, "wb") as out:
                with (
                    gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0) as packed,
                    os.fdopen(os.dup(fd), "rb") as source,
                ):
                    shutil.copyfileobj(source, packed, _CHUNK)
                out.flush()
                os.fsync(out.fileno())
            partial.replace(target)
            fsync_directory(str(path.parent))
            path.unlink()
            with contextlib.suppress(FileNotFoundError):
                Path(f"{path}.snapshot").unlink()
        except OSError as exc:
            with contextlib.suppress(OSError):
                partial.unlink()
            raise LedgerError(f"{path}: cannot compress: {exc.strerror or exc}") from exc
        return True
    finally:
        os.close(fd)


def compress_closed(directory: Path, keep: int, *, in_use: Path | None = None) -> list[Path]:
    """The compressed half of a schedule's retention over ``directory``'s dated ledgers:
    gzip the kept ones no run appends to any more (all but the newest and ``in_use``), and
    delete any beyond the newest ``keep`` (compressed ones included). Returns those deleted.
    """
    try:
        names = [p for p in directory.iterdir() if _DATED.match(p.name)]
    except OSError as exc:
        raise LedgerError(f"ledger directory {directory}: cannot list: {exc}") from exc
    names.sort(key=lambda p: p.name.removesuffix(SUFFIX), reverse=True)
    removed: list[Path] = []
    for index, path in enumerate(names):
        if in_use is not None and path.name == in_use.name and path.parent == in_use.parent:
            continue
        if index >= keep:
            if _unlink_unless_locked(path):
                removed.append(path)
        elif index > 0 and not is_compressed(path) and _size(path) >= MIN_SIZE:
            compress_ledger(path)
    return removed


def _size(path: Path) -> int:
    try:
        return path.lstat().st_size
    except OSError:
        return 0


def _unlink_unless_locked(path: Path) -> bool:
    try:
        fd = open_regular(path, os.O_RDONLY)
    except (FileNotFoundError, NotRegularFileError):
        return False
    except OSError as exc:
        raise LedgerError(f"{path}: cannot open for pruning: {exc.strerror or exc}") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        try:
            path.unlink()
            if not is_compressed(path):
                Path(f"{path}.snapshot").unlink(missing_ok=True)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise LedgerError(f"{path}: cannot delete: {exc.strerror or exc}") from exc
        return True
    finally:
        os.close(fd)
