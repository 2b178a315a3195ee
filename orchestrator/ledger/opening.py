"""Opening a ledger for writing, and letting go of one that was never used.

:func:`open_ledger` opens the file (never through a symlink, 0600), takes its ``flock`` and
cuts a line a crash tore. :func:`remove_if_unused` removes, on close, a ledger this writer
created and never wrote to: a run refused before its ``run_started`` (refused credentials, an
unreachable endpoint) leaves no empty file that would look like a ledger with a run in it.
"""

from __future__ import annotations

import fcntl
import os
from typing import Final

from orchestrator.atomic_file import fsync_directory
from orchestrator.errors import LedgerError, LedgerLockedError
from orchestrator.ledger.archive import refuse_compressed
from orchestrator.ledger.torn_tail import cut_torn_tail
from orchestrator.safe_file import PRIVATE, open_or_create

__all__ = ["open_ledger", "open_locked", "remove_if_unused"]

# Read and write: the torn-tail check reads through the very descriptor that was checked to be
# a regular file (a second open by name could meet another file).
_OPEN_FLAGS: Final = os.O_RDWR | os.O_APPEND | os.O_CLOEXEC
#: A name replaced this many times while being opened is being fought over by another run.
_OPEN_TRIES: Final = 3


def open_locked(path: str, fsync: bool) -> tuple[int, int]:
    """Open ``path`` for appending, lock it, cut a torn last line. Returns (fd, bytes cut)."""
    fd, cut, _ = open_ledger(path, fsync)
    return fd, cut


def open_ledger(path: str, fsync: bool) -> tuple[int, int, bool]:
    """:func:`open_locked`, and whether the file was created."""
    refuse_compressed(path)
    for _ in range(_OPEN_TRIES):
        fd, created = _open_and_lock(path)
        if _still_named(fd, path):
            break
        # The writer that held the lock removed the file it had created and never written
        # (see remove_if_unused): this descriptor is of a deleted file. Open the name anew.
        os.close(fd)
    else:
        raise LedgerLockedError(
            f"{path}: the ledger keeps being replaced while it is opened "
            "(another run is starting on it: wait for it, or use another --ledger)"
        )
    try:
        if created and fsync:
            fsync_directory(os.path.dirname(os.path.abspath(path)))
        cut = cut_torn_tail(fd)
        if cut and fsync:
            os.fsync(fd)
    except LedgerError:
        os.close(fd)
        raise
    except OSError as exc:
        os.close(fd)
        raise LedgerError(f"{path}: cannot prepare the ledger: {exc.strerror or exc}") from exc
    return fd, cut, created


def _open_and_lock(path: str) -> tuple[int, bool]:
    try:
        # Never through a symlink, never blocking on a FIFO, 0600 whatever the umask: a
        # ledger directory (the scheduler's above all) may be writable by others.
        fd, created = open_or_create(path, _OPEN_FLAGS, mode=PRIVATE)
    except FileNotFoundError as exc:
        # Only the folder can be missing (the file is created): say which, as a typo in it
        # is the usual cause. It is not created for the operator: a wrong path stays wrong.
        folder = os.path.dirname(path) or "."
        raise LedgerError(
            f"{path}: cannot open the ledger: the folder {folder} does not exist"
        ) from exc
    except OSError as exc:
        raise LedgerError(f"{path}: cannot open the ledger: {exc.strerror or exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        os.close(fd)
        raise LedgerLockedError(
            f"{path}: the ledger is locked: another run is writing it "
            "(wait for it to finish, or use another --ledger)"
        ) from exc
    except OSError as exc:
        os.close(fd)
        raise LedgerError(f"{path}: cannot lock the ledger: {exc.strerror or exc}") from exc
    return fd, created


def _still_named(fd: int, path: str) -> bool:
    """Whether ``path`` still names the file ``fd`` is open on (and locked)."""
    try:
        named = os.stat(path, follow_symlinks=False)
        opened = os.fstat(fd)
    except FileNotFoundError:
        return False
    except OSError as exc:
        os.close(fd)
        raise LedgerError(f"{path}: cannot open the ledger: {exc.strerror or exc}") from exc
    return (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)


def remove_if_unused(fd: int, path: str, unused: bool) -> None:
    """Remove a ledger this writer created and never wrote a line to (a run refused before
    its ``run_started``: refused credentials, a manifest with no row): an empty file would
    look like a ledger with a run in it. Done under the lock, before it is released; a
    writer that opened the name meanwhile notices (:func:`_still_named`) and opens it anew.
    A ledger that existed before is never removed, and neither is one with a byte in it."""
    if not unused:
        return
    try:
        named, opened = os.stat(path, follow_symlinks=False), os.fstat(fd)
        if opened.st_size == 0 and (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino):
            os.unlink(path)
    except OSError:
        pass  # an empty file left behind is harmless: the next run appends to it
