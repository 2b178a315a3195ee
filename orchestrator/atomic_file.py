"""Replacing a file so that a reader, or a crash, sees the old content or the whole new one."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

__all__ = ["fsync_directory", "replace_file", "replacing"]


@contextmanager
def replacing(path: str | os.PathLike[str], *, mode: int = 0o600) -> Iterator[BinaryIO]:
    """A temporary file beside ``path`` to write; when the block ends without an exception it
    is fsynced, renamed over ``path``, and the directory fsynced (so the rename itself
    survives a power cut). On an exception, or a failure of any of that, the temporary file
    is removed and ``path`` is left as it was.

    ``mode`` (default 0600: what the tool writes can name projects, ids and errors) is set
    with ``fchmod`` on the temporary file before the rename, so that the umask never decides
    and the file is never visible with other bits. Raises OSError."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            yield file
            file.flush()
            os.fchmod(file.fileno(), mode)
            os.fsync(file.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_directory(target.parent)


def replace_file(path: str | os.PathLike[str], data: bytes, *, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` atomically (see :func:`replacing`)."""
    with replacing(path, mode=mode) as file:
        file.write(data)


def fsync_directory(directory: str | os.PathLike[str]) -> None:
    """Make the directory's entries (a new or renamed file) durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
