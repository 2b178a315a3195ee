"""The one writer of a ledger file: whole lines appended, fsynced in batches, under a lock.

:class:`LedgerWriter` appends whole lines with ``os.write`` and fsyncs them in a worker
thread, one fsync per *batch* (every ``commit_interval`` seconds or ``commit_lines``
lines, whichever comes first, and at once when a task waits for a line of it). A line is
durable only once its batch is fsynced;
:meth:`LedgerWriter.write_durable` returns at that moment. The file is ``flock``-ed so two
runs can never write one ledger, and a line torn by a crash (the file does not end in a
newline and is no complete record) is cut when the ledger is next opened for writing; a
complete record that only lacks its newline is kept and the newline added. Readers
(:func:`iter_records`) fold such a record, skip a torn *last* line and refuse a broken line
anywhere else.
"""

from __future__ import annotations

import errno
import functools
import os
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Final, Self

import anyio
import anyio.to_thread
import orjson
from anyio.abc import TaskGroup

from orchestrator.errors import LedgerError, LedgerWriteError
from orchestrator.ledger.opening import open_ledger, remove_if_unused
from orchestrator.ledger.serial_thread import SerialThread

__all__ = ["LedgerWriter", "LineBatch"]


_dumps = orjson.dumps
_NEWLINE: Final = orjson.OPT_APPEND_NEWLINE


class LineBatch:
    """Lines that are committed together, and the news of how that went."""

    __slots__ = ("done", "error", "lines", "urgent")

    def __init__(self) -> None:
        self.lines: list[bytes] = []
        self.done = anyio.Event()
        self.urgent = anyio.Event()  # commit it now: it is full, or someone waits for it
        self.error: LedgerWriteError | None = None

    async def durable(self) -> None:
        """Return once the batch is on disk; raise :class:`LedgerWriteError` if it cannot be.

        Waiting makes the batch commit at once rather than at the end of the interval. A
        batch already committed returns without yielding to the event loop."""
        if not self.done.is_set():
            self.urgent.set()
            await self.done.wait()
        if self.error is not None:
            raise self.error


class LedgerWriter:
    """The one writer of a ledger file: an async context manager, usable once.

    :meth:`write` only encodes and enqueues (a few microseconds); a background task commits
    batches. Use :meth:`write_durable` for a line that must be on disk before you go on (an
    ``attempt`` before its request) and :meth:`flush` to wait for everything written so far.

    A failed write or fsync (disk full, I/O error) fails the writer for good: the waiters
    of the failed batch, and every later call, get :class:`LedgerWriteError`; leaving the
    context raises it too unless another exception is already on its way.

    On exit the last lines are committed even when the surrounding scope is being
    cancelled, within ``close_timeout`` seconds. A commit already running in the worker
    thread is always let finish (so lines reach the file in order): a disk that hangs an
    fsync hangs the exit as long.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        commit_interval: float = 0.002,
        commit_lines: int = 1024,
        fsync: bool = True,
        close_timeout: float = 10.0,
    ) -> None:
        if commit_interval < 0 or commit_lines < 1:
            raise ValueError("commit_interval must be >= 0 and commit_lines >= 1")
        self.path = os.fspath(path)
        self.repaired_bytes = 0
        self._interval = commit_interval
        self._commit_lines = commit_lines
        self._fsync = fsync
        self._close_timeout = close_timeout
        self._fd = -1
        self._created = False  # this writer created the file (it did not exist before)
        self._used = False  # a line was handed to write()
        self._state = "new"  # -> "open" -> "closed"
        self._failure: LedgerWriteError | None = None
        # Set when opened: the batch and its events belong to the event loop that opens it.
        self._batch: LineBatch  # the open batch: lines not yet handed to a commit
        self._pending: list[bytes]  # the open batch's list, for a cheap write()
        self._wakeup: anyio.Event  # the open batch got its first line
        self._inflight: LineBatch | None = None
        self._tg: TaskGroup | None = None
        # Started on entry; one thread, so commits reach the file in order without a limiter.
        self._committer = SerialThread(f"ledger {os.path.basename(self.path)}")
        self._lines_written = 0
        self._commits = 0

    # --- public -------------------------------------------------------------------------

    @property
    def lines_written(self) -> int:
        """Lines committed to the file (and fsynced, unless ``fsync=False``)."""
        return self._lines_written

    @property
    def commits(self) -> int:
        """Batches committed so far: one write and one fsync each."""
        return self._commits

    @property
    def failure(self) -> LedgerWriteError | None:
        """The error that failed this writer, if one did."""
        return self._failure

    def write(self, record: Mapping[str, Any]) -> LineBatch:
        """Encode ``record`` as one line and enqueue it; it is committed soon after.

        Returns the line's batch: ``await batch.durable()`` waits until the line is on disk,
        so a caller can write now and wait later."""
        if self._state != "open" or self._failure is not None:
            self._refuse()
        self._used = True
        batch = self._batch
        pending = self._pending
        pending.append(_dumps(record, option=_NEWLINE))
        size = len(pending)
        if size == 1:
            self._wakeup.set()
        if size >= self._commit_lines:
            batch.urgent.set()
        return batch

    async def write_durable(self, record: Mapping[str, Any]) -> None:
        """Enqueue ``record`` and return once it is on disk (fsynced)."""
        await self.write(record).durable()

    async def flush(self) -> None:
        """Return once every line enqueued so far is on disk."""
        if self._state != "open":
            self._refuse()
        if self._pending:
            batch = self._batch
        elif self._inflight is not None:
            batch = self._inflight
        else:
            if self._failure is not None:
                raise self._failure
            return
        await batch.durable()

    async def __aenter__(self) -> Self:
        if self._state != "new":
            raise LedgerError(f"{self.path}: a ledger writer cannot be opened twice")
        self._fd, self.repaired_bytes, self._created = await anyio.to_thread.run_sync(
            open_ledger, self.path, self._fsync
        )
        self._state = "open"
        self._open_batch()
        await self._committer.__aenter__()
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._flusher)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        tg, self._tg = self._tg, None
        self._state = "closed"
        try:
            if tg is not None:
                tg.cancel_scope.cancel()
                # Never hand the body's exception to the task group: it would come back
                # wrapped in an ExceptionGroup.
                await tg.__aexit__(None, None, None)
        finally:
            with anyio.CancelScope(shield=True) as scope:
                scope.deadline = anyio.current_time() + self._close_timeout
                await self._commit(final=True)
            if scope.cancelled_caught:
                self._fail(f"the last lines were not on disk within {self._close_timeout} s")
            else:
                remove_if_unused(self._fd, self.path, self._created and not self._used)
                os.close(self._fd)  # releases the lock
            self._fd = -1
            await self._committer.__aexit__(None, None, None)
        if self._failure is not None and exc is None:
            raise self._failure

    # --- the committer ------------------------------------------------------------------

    async def _flusher(self) -> None:
        """Commit a batch when it is full, someone waits for it, or the interval elapsed."""
        while self._failure is None:
            await self._wakeup.wait()
            urgent = self._batch.urgent
            if not urgent.is_set() and self._interval > 0:
                with anyio.move_on_after(self._interval):
                    await urgent.wait()
            with anyio.CancelScope(shield=True):  # a started commit always completes
                await self._commit(final=False)

    async def _commit(self, *, final: bool) -> None:
        batch = self._batch
        if not batch.lines or self._failure is not None:
            return
        # Swap in the next batch before the first await: lines written from now on belong
        # to it, and its first line wakes the flusher again.
        self._open_batch()
        self._inflight = batch
        try:
            await self._committer.run(
                functools.partial(self._write_sync, batch.lines),
                abandon_on_cancel=final,  # only the final commit can be given up on
            )
        except OSError as exc:
            batch.error = self._fail(
                f"{exc.strerror or exc} (errno {errno.errorcode.get(exc.errno or 0, exc.errno)})"
            )
            batch.error.__cause__ = exc
        else:
            self._lines_written += len(batch.lines)
            self._commits += 1
        finally:
            self._inflight = None
            batch.done.set()

    def _open_batch(self) -> None:
        self._batch = LineBatch()
        self._pending = self._batch.lines
        self._wakeup = anyio.Event()

    def _write_sync(self, lines: list[bytes]) -> None:
        """Append the batch and fsync it (in a worker thread)."""
        data = memoryview(b"".join(lines))
        while data:
            written = os.write(self._fd, data)
            data = data[written:]
        if self._fsync:
            os.fsync(self._fd)

    def _fail(self, reason: str) -> LedgerWriteError:
        """Fail the writer for good; the open batch's waiters get the error too."""
        if self._failure is None:
            self._failure = LedgerWriteError(
                f"{self.path}: cannot write the ledger: {reason}; "
                "lines after the last durable one may be lost"
            )
        error = self._failure
        batch = self._batch
        batch.error = error
        batch.done.set()
        self._wakeup.set()  # let the flusher see the failure and stop
        return error

    def _refuse(self) -> None:
        if self._failure is not None:
            raise self._failure
        if self._state == "new":
            raise LedgerError(f"{self.path}: the ledger writer is not open (use `async with`)")
        raise LedgerError(f"{self.path}: the ledger writer is closed")
