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
def replacing(path: str | os.PathLike[str], *, mode: int = 0o644) -> Iterator[BinaryIO]:
    """A temporary file beside ``path`` to write; when the block ends without an exception it
    is fsynced, renamed over ``path``, and the directory fsynced (so the rename itself
    survives a power cut). On an exception, or a failure of any of that, the temporary file
    is removed and ``path`` is left as it was.

    ``mode`` defaults to 0644: mkstemp's 0600 would surprise whoever reads the file next (a
    node_exporter, an operator, a run by another user). Raises OSError."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_directory(target.parent)


def replace_file(path: str | os.PathLike[str], data: bytes, *, mode: int = 0o644) -> None:
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
