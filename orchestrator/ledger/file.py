"""The run ledger: an append-only JSON Lines file with one writer and group-committed fsync.

The ledger is the run's memory: ``resume`` and ``plan`` read it to know which pairs are done,
``report`` summarises it, and an ``attempt`` line made durable *before* a replicate request
is sent is what lets a crashed run tell "never sent" from "outcome unknown".

Schema, version 1
=================

Every line is one JSON object (UTF-8, no blank lines) with these common fields:

==========  =================================================================
``v``       schema version, ``1``
``event``   ``run_started``, ``attempt``, ``result``, ``run_finished`` or
            ``copy_status``
``ts``      when the line was written: ISO-8601 UTC with microseconds,
            ``2025-01-31T23:59:59.123456+00:00``
``run_id``  the run that wrote the line
==========  =================================================================

A *pair* is (``project_id``, ``checkpoint_item_id``, ``destination_region``): the source
project, the backup, the region it is copied to. A CBR run (``settings.service`` ``"cbr"``)
writes ``backup_id`` in place of ``checkpoint_item_id`` and adds ``destination_vault_id``
after ``destination_project_id`` on its ``attempt``, ``result`` and ``copy_status`` lines;
readers take either id. Event-specific fields:

``run_started``
    ``manifest`` (absolute path, or null when tasks were discovered), ``source``
    (``"manifest"`` or ``"discover"``), ``settings`` (the effective settings, never a
    secret), ``version`` (of csbs-orchestrator).
``attempt``
    ``project_id``, ``checkpoint_item_id``, ``destination_region``,
    ``destination_project_id``, ``attempt`` (1-based). Written and made durable *before* the
    replicate request is sent: a pair whose last ``attempt`` has no later ``result`` has an
    unknown outcome and is reconciled with the service before any resend.
``result``
    the pair's final outcome in this run: ``checkpoint_item_id``, ``project_id``,
    ``source_region``, ``destination_region``, ``destination_project_id``, ``status``
    (``replicated``, ``already_replicated``, ``failed``, ``gave_up`` or ``rejected``),
    ``replication_record_id``, ``http_status``, ``error_code``, ``error_msg``,
    ``attempts``, ``started_at``, ``finished_at`` (ISO-8601 UTC), ``duration_s``,
    ``manifest_line``; and ``outcome_unknown: true`` on a ``gave_up`` whose last request
    may have been applied (cut after sending, never reconciled): like an attempt without a
    result, the next run asks the service before it sends that pair again. A ``rejected``
    line is a manifest row that failed validation; it also
    carries ``manifest`` (path) and ``field`` (the bad field, or null), and its ids may be
    null.
``run_finished``
    ``counts`` (``{status: n}``), ``duplicates``, ``conflicts``, ``interrupted`` (bool),
    ``reason`` (null, ``"signal"``, ``"deadline"``, ``"threshold"``, ``"auth"`` or
    ``"unreachable"``), ``duration_s``, ``exit_code``, ``requests``, ``retries``.
``copy_status``
    written by ``track``: the pair's fields, ``replication_record_id``, ``copy_status`` (the
    service's own word: a record's ``waiting_replicate``, ``replicating``, ``success``,
    ``fail``, ``skip``, or an item's ``waiting_copy``, ``copying``), ``state`` (what the word
    means: ``running``, ``success``, ``failed`` or ``skipped``; absent in older ledgers,
    where it follows from ``copy_status``) and ``progress`` (0-100).

Readers ignore fields they do not know; a line with a ``v`` above 1 is refused. A run
writes its ``attempt`` and ``result`` lines *compact* (no ``run_id``, ``t`` for ``ts``,
repeated fields and defaults left out): :class:`LedgerReader` gives them back verbose, see
:mod:`orchestrator.ledger.compact`.

Durability
==========

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
import fcntl
import functools
import os
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import Any, BinaryIO, Final, Self

import anyio
import anyio.to_thread
import orjson
from anyio.abc import TaskGroup

from orchestrator.atomic_file import fsync_directory
from orchestrator.errors import LedgerError, LedgerLockedError, LedgerWriteError
from orchestrator.ledger.archive import is_compressed, open_compressed, refuse_compressed
from orchestrator.ledger.compact import Expander
from orchestrator.ledger.format import SCHEMA_VERSION
from orchestrator.ledger.serial_thread import SerialThread
from orchestrator.safe_file import PRIVATE, open_or_create, open_regular

__all__ = [
    "LedgerReader",
    "LedgerWriter",
    "LineBatch",
    "iter_records",
    "last_record",
]


# Read and write: the torn-tail check reads through the very descriptor that was checked to be
# a regular file (a second open by name could meet another file).
_OPEN_FLAGS: Final = os.O_RDWR | os.O_APPEND | os.O_CLOEXEC
_TAIL_CHUNK: Final = 65536
_SCAN_CHUNK: Final = 1 << 20
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
            _open_ledger, self.path, self._fsync
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
                _remove_if_unused(self._fd, self.path, self._created and not self._used)
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


# --- opening --------------------------------------------------------------------------------


def _open_locked(path: str, fsync: bool) -> tuple[int, int]:
    """Open ``path`` for appending, lock it, cut a torn last line. Returns (fd, bytes cut)."""
    fd, cut, _ = _open_ledger(path, fsync)
    return fd, cut


def _open_ledger(path: str, fsync: bool) -> tuple[int, int, bool]:
    """:func:`_open_locked`, and whether the file was created."""
    refuse_compressed(path)
    for _ in range(3):
        fd, created = _open_and_lock(path)
        if _still_named(fd, path):
            break
        # The writer that held the lock removed the file it had created and never written
        # (see _remove_if_unused): this descriptor is of a deleted file. Open the name anew.
        os.close(fd)
    else:
        raise LedgerLockedError(
            f"{path}: the ledger keeps being replaced while it is opened "
            "(another run is starting on it: wait for it, or use another --ledger)"
        )
    try:
        if created and fsync:
            fsync_directory(os.path.dirname(os.path.abspath(path)))
        cut = _cut_torn_tail(fd, path)
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


def _remove_if_unused(fd: int, path: str, unused: bool) -> None:
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


def _cut_torn_tail(fd: int, path: str) -> int:
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


# --- reading --------------------------------------------------------------------------------


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


def last_record(path: str | os.PathLike[str], event: str) -> dict[str, Any] | None:
    """The last record of the ledger whose ``event`` is ``event``, or None.

    Reads the file backwards in blocks and parses only the lines that mention the event's
    name, so finding the last ``run_started`` of a million-line ledger reads about the last
    run's lines instead of parsing every line. A candidate line that does not parse is
    passed over: this is a look-up, and whoever folds the ledger (:func:`iter_records`)
    reports it.
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


def _only_blank_left(f: BinaryIO) -> bool:
    return all(not rest.strip() for rest in f)


def _check_version(version: object, name: str, lineno: int) -> None:
    if type(version) is int and version > SCHEMA_VERSION:
        raise LedgerError(
            f"{name}:{lineno}: written by a newer csbs-orchestrator (ledger schema "
            f"v{version}; this version reads v{SCHEMA_VERSION})"
        )
    raise LedgerError(f"{name}:{lineno}: not a ledger line (schema version {version!r})")
