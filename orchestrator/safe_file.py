"""Opening files in a directory someone else may write: never a symlink's target, never a FIFO.

The scheduler's state directory, a shared ledger directory, the place a log file goes: a
symlink planted there would make us write (or truncate) the file it points to, and a FIFO
or device would block ``open`` for good. :func:`open_regular` opens with ``O_NONBLOCK`` (a
FIFO then opens, or fails, at once) and, unless ``follow`` is true, ``O_NOFOLLOW``; it then
``fstat``\\ s the descriptor and refuses anything but a regular file. The refusal is an
:class:`NotRegularFileError`, an :class:`OSError` whose ``strerror`` says what was found, so
that the callers' existing ``except OSError`` paths report it in their own words.

Files created here get exactly ``mode`` (``fchmod`` after the create): the umask may only
take bits away, and a umask of 0 must not make a ledger world-readable.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat

__all__ = ["PRIVATE", "NotRegularFileError", "open_or_create", "open_regular"]

#: The mode of every file the tool creates, unless documented otherwise (the metrics file).
PRIVATE = 0o600


class NotRegularFileError(OSError):
    """The path names a symlink, FIFO, device, socket or directory: refused."""


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def _refusal(kind: str) -> NotRegularFileError:
    return NotRegularFileError(
        errno.EINVAL, f"{kind}, not a regular file: refused (remove it or use another path)"
    )


def open_regular(path: str | os.PathLike[str], flags: int, *, follow: bool = False) -> int:
    """``os.open(path, flags)`` for a regular file only; see the module docstring.

    ``follow``: accept a symlink to a regular file (a path the user named on the command
    line); false for paths inside a directory others may write. Raises OSError.
    """
    fd = _open(path, flags, 0, follow)
    return _checked(fd)


def open_or_create(
    path: str | os.PathLike[str], flags: int, *, mode: int = PRIVATE, follow: bool = False
) -> tuple[int, bool]:
    """Open ``path`` (a regular file) or create it with exactly ``mode``. Returns
    ``(fd, created)``. Raises OSError."""
    base = flags & ~(os.O_CREAT | os.O_EXCL)
    try:
        fd = _open(path, base | os.O_CREAT | os.O_EXCL, mode, follow)
    except FileExistsError:
        return _checked(_open(path, base, 0, follow)), False
    try:
        os.fchmod(fd, mode)
    except OSError:
        os.close(fd)
        raise
    return _checked(fd), True


def _open(path: str | os.PathLike[str], flags: int, mode: int, follow: bool) -> int:
    flags |= os.O_NONBLOCK | os.O_CLOEXEC
    if not follow:
        flags |= os.O_NOFOLLOW
    try:
        return os.open(path, flags, mode)
    except OSError as exc:
        # O_NOFOLLOW on a symlink fails with ELOOP ("too many levels of symbolic links"),
        # which tells an operator nothing: say what is there.
        if not follow and exc.errno == errno.ELOOP:
            raise _refusal("a symbolic link") from None
        if exc.errno == errno.ENXIO:  # a FIFO opened for writing with no reader
            raise _refusal("a FIFO (named pipe)") from None
        if exc.errno == errno.EISDIR:  # opened for writing: say it as a read-only open does
            raise _refusal("a directory") from None
        raise


def _require_regular(mode: int) -> None:
    if not stat.S_ISREG(mode):
        raise _refusal(_kind(mode))


def _checked(fd: int) -> int:
    try:
        _require_regular(os.fstat(fd).st_mode)
        # O_NONBLOCK only had to get us past open(); on a regular file it changes nothing,
        # but leave the descriptor as a plain open would have.
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    except BaseException:
        os.close(fd)
        raise
    return fd
