"""The ledger writer: append and read back, group commit, durability, the lock, failures."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest

from orchestrator.errors import LedgerError, LedgerLockedError, LedgerWriteError
from orchestrator.ledger.file import LedgerWriter
from tests.helpers.ledger_records import read_all, rec

pytestmark = pytest.mark.anyio


class FsyncSpy:
    """Counts fsyncs (and of which kind of file) while still doing them."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.files = 0
        self.dirs = 0
        self.lock = threading.Lock()

    def __call__(self, fd: int) -> None:
        with self.lock:
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                self.dirs += 1
            else:
                self.files += 1
        self.real(fd)


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> FsyncSpy:
    spy = FsyncSpy(os.fsync)
    monkeypatch.setattr(os, "fsync", spy)
    return spy


async def test_round_trip(tmp_path: Path, fsyncs: FsyncSpy) -> None:
    path = tmp_path / "ledger.jsonl"
    records = [rec(i) for i in range(100)]
    async with LedgerWriter(path) as ledger:
        for r in records:
            ledger.write(r)
    assert ledger.lines_written == 100
    assert read_all(path) == records
    assert fsyncs.dirs == 1  # the new file's directory entry was made durable
    assert path.read_bytes().count(b"\n") == 100
    assert oct(path.stat().st_mode & 0o777) == oct(0o600)  # whatever the umask (issue 21)


async def test_appends_to_an_existing_ledger(tmp_path: Path, fsyncs: FsyncSpy) -> None:
    path = tmp_path / "ledger.jsonl"
    async with LedgerWriter(path) as ledger:
        ledger.write(rec(1))
    async with LedgerWriter(path) as ledger:
        ledger.write(rec(2))
        assert ledger.repaired_bytes == 0
    assert read_all(path) == [rec(1), rec(2)]
    assert fsyncs.dirs == 1  # only when created


async def test_write_durable_returns_only_after_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entered = threading.Event()
    release = threading.Event()
    real = os.fsync

    def gated(fd: int) -> None:
        entered.set()
        release.wait(5)
        real(fd)

    path = tmp_path / "ledger.jsonl"
    done = anyio.Event()
    async with LedgerWriter(path, commit_interval=0) as ledger:
        monkeypatch.setattr(os, "fsync", gated)

        async def durable() -> None:
            await ledger.write_durable(rec(1))
            done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(durable)
            await anyio.to_thread.run_sync(entered.wait, 5)
            # Written to the file, but the fsync has not returned: not durable yet.
            assert path.read_bytes().count(b"\n") == 1
            assert not done.is_set()
            release.set()
        assert done.is_set()
        assert ledger.lines_written == 1


async def test_concurrent_durable_writers_share_one_fsync(tmp_path: Path, fsyncs: FsyncSpy) -> None:
    path = tmp_path / "ledger.jsonl"
    # A long interval: the batch commits exactly when its 100th line arrives.
    async with LedgerWriter(path, commit_interval=60, commit_lines=100) as ledger:
        before = fsyncs.files
        async with anyio.create_task_group() as tg:
            for i in range(100):
                tg.start_soon(ledger.write_durable, rec(i))
        assert fsyncs.files - before == 1
        assert ledger.commits == 1
    assert len(read_all(path)) == 100


async def test_a_waiter_commits_its_batch_at_once_and_others_wait_for_the_interval(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ledger.jsonl"
    async with LedgerWriter(path, commit_interval=60) as ledger:
        batch = ledger.write(rec(1))  # nobody waits: it waits for the (long) interval
        for _ in range(50):
            await anyio.lowlevel.checkpoint()
        assert ledger.commits == 0
        with anyio.fail_after(5):  # far less than the interval: the wait itself commits
            await batch.durable()
        assert ledger.commits == 1
        # Already on disk: returns without waiting for anything.
        await batch.durable()
    assert len(read_all(path)) == 1


async def test_group_commit_batches_lines(tmp_path: Path, fsyncs: FsyncSpy) -> None:
    path = tmp_path / "ledger.jsonl"
    async with LedgerWriter(path, commit_interval=60, commit_lines=1000) as ledger:
        for i in range(5000):
            ledger.write(rec(i))
        await ledger.flush()
        assert ledger.lines_written == 5000
        # The flusher runs only when this task yields: every line is in one or a few batches.
        assert 1 <= ledger.commits <= 5
        assert fsyncs.files == ledger.commits
    assert len(read_all(path)) == 5000


async def test_interval_commits_a_batch_that_is_not_full(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    async with LedgerWriter(path, commit_interval=0.001, commit_lines=10_000) as ledger:
        with anyio.fail_after(5):  # only the interval can commit this lone line
            await ledger.write_durable(rec(1))
        assert path.read_bytes().count(b"\n") == 1


async def test_flush_with_nothing_pending_returns(tmp_path: Path) -> None:
    async with LedgerWriter(tmp_path / "l.jsonl") as ledger:
        await ledger.flush()
        ledger.write(rec(1))
        await ledger.flush()
        await ledger.flush()
        assert ledger.lines_written == 1


async def test_fsync_disabled(tmp_path: Path, fsyncs: FsyncSpy) -> None:
    path = tmp_path / "ledger.jsonl"
    async with LedgerWriter(path, fsync=False) as ledger:
        await ledger.write_durable(rec(1))
    assert fsyncs.files == fsyncs.dirs == 0
    assert read_all(path) == [rec(1)]


# --- the lock -------------------------------------------------------------------------------


async def test_second_writer_in_this_process_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    async with LedgerWriter(path) as ledger:
        ledger.write(rec(1))
        with pytest.raises(LedgerLockedError, match="another run") as info:
            async with LedgerWriter(path):
                pass
        assert str(path) in str(info.value)
    # Released on close: the next run may write.
    async with LedgerWriter(path) as ledger:
        ledger.write(rec(2))
    assert read_all(path) == [rec(1), rec(2)]


_OTHER_PROCESS = """
import sys, anyio
from orchestrator.errors import LedgerLockedError
from orchestrator.ledger.file import LedgerWriter
async def main():
    try:
        async with LedgerWriter(sys.argv[1]):
            print("opened")
    except LedgerLockedError as exc:
        print("locked:", exc)
anyio.run(main)
"""


async def test_second_writer_in_another_process_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"

    def other() -> str:
        out = subprocess.run(  # noqa: S603 (our own interpreter and script)
            [sys.executable, "-c", _OTHER_PROCESS, str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return out.stdout

    async with LedgerWriter(path):
        assert (await anyio.to_thread.run_sync(other)).startswith(f"locked: {path}")
    assert (await anyio.to_thread.run_sync(other)).startswith("opened")


# --- failures -------------------------------------------------------------------------------


async def test_fsync_failure_fails_the_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ledger.jsonl"
    real = os.fsync
    seen: list[LedgerWriteError] = []

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    async def run() -> None:
        async with LedgerWriter(path, commit_interval=0) as ledger:
            await ledger.write_durable(rec(1))
            monkeypatch.setattr(os, "fsync", full)
            with pytest.raises(LedgerWriteError, match="ENOSPC") as first:
                await ledger.write_durable(rec(2))
            seen.append(first.value)
            monkeypatch.setattr(os, "fsync", real)
            with pytest.raises(LedgerWriteError):
                ledger.write(rec(3))
            with pytest.raises(LedgerWriteError):
                await ledger.flush()

    with pytest.raises(LedgerWriteError, match="No space left") as info:
        await run()
    assert info.value is seen[0]  # leaving the context re-raises the failure
    assert str(path) in str(info.value)
    assert isinstance(info.value.__cause__, OSError)
    # What reached the file is still a readable ledger.
    assert read_all(path)[0] == rec(1)


async def test_write_failure_reaches_every_waiter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ledger.jsonl"
    errors: list[BaseException] = []
    entered = threading.Event()
    release = threading.Event()

    def broken(fd: int, data: Any) -> int:
        entered.set()
        release.wait(5)
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    async def run() -> None:
        async with LedgerWriter(path, commit_interval=60, commit_lines=10) as ledger:

            async def waiter(i: int) -> None:
                try:
                    await ledger.write_durable(rec(i))
                except LedgerWriteError as exc:
                    errors.append(exc)

            monkeypatch.setattr(os, "write", broken)
            async with anyio.create_task_group() as tg:
                for i in range(10):  # a full batch: its commit starts (and hangs in write)
                    tg.start_soon(waiter, i)
                await anyio.to_thread.run_sync(entered.wait, 5)
                for i in range(10, 15):  # the next, open batch
                    tg.start_soon(waiter, i)
                await anyio.wait_all_tasks_blocked()
                release.set()

    with pytest.raises(LedgerWriteError, match="Input/output error"):
        await run()
    assert len(errors) == 15
    assert path.read_bytes() == b""


async def test_body_exception_passes_through_and_lines_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"

    async def run() -> None:
        async with LedgerWriter(path, commit_interval=60) as ledger:
            ledger.write(rec(1))
            raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):  # not wrapped in an ExceptionGroup
        await run()
    assert read_all(path) == [rec(1)]


async def test_cancellation_still_flushes(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    with anyio.CancelScope() as scope:
        async with LedgerWriter(path, commit_interval=60) as ledger:
            for i in range(10):
                ledger.write(rec(i))
            scope.cancel()
            await anyio.sleep_forever()
    assert scope.cancelled_caught
    assert len(read_all(path)) == 10


async def test_deadline_during_a_commit_still_flushes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ledger.jsonl"
    entered = threading.Event()
    release = threading.Event()
    real = os.fsync

    def slow(fd: int) -> None:
        entered.set()
        release.wait(5)
        real(fd)

    with anyio.CancelScope() as scope:
        async with LedgerWriter(path, commit_interval=0) as ledger:
            monkeypatch.setattr(os, "fsync", slow)
            ledger.write(rec(1))
            await anyio.to_thread.run_sync(entered.wait, 5)
            ledger.write(rec(2))  # queued behind the commit in progress
            scope.cancel()
            release.set()
            await anyio.sleep_forever()
    assert [r["checkpoint_item_id"][-1] for r in read_all(path)] == ["1", "2"]


async def test_writer_is_single_use(tmp_path: Path) -> None:
    ledger = LedgerWriter(tmp_path / "l.jsonl")
    with pytest.raises(LedgerError, match="not open"):
        ledger.write(rec(1))
    async with ledger:
        pass
    with pytest.raises(LedgerError, match="closed"):
        ledger.write(rec(1))
    with pytest.raises(LedgerError, match="closed"):
        await ledger.flush()
    with pytest.raises(LedgerError, match="twice"):
        async with ledger:
            pass


async def test_unwritable_location_is_a_ledger_error(tmp_path: Path) -> None:
    with pytest.raises(LedgerError, match="cannot open"):
        async with LedgerWriter(tmp_path / "no-such-dir" / "l.jsonl"):
            pass


def test_rejects_bad_settings(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="commit_lines"):
        LedgerWriter(tmp_path / "l.jsonl", commit_lines=0)


def test_can_be_made_outside_an_event_loop(tmp_path: Path) -> None:
    ledger = LedgerWriter(tmp_path / "l.jsonl")

    async def use() -> None:
        async with ledger:
            await ledger.write_durable(rec(1))

    anyio.run(use)
    assert read_all(tmp_path / "l.jsonl") == [rec(1)]
