"""A ledger file a writer created and never wrote to is removed when it closes (a run refused
before its ``run_started``); a file that was there before, or got a line, stays."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest

from orchestrator import safe_file
from orchestrator.ledger.file import LedgerWriter, iter_records
from orchestrator.ledger.opening import open_ledger

REC = {"v": 1, "event": "run_started", "ts": "2025-01-01T00:00:00+00:00", "run_id": "r"}


async def _open_and_close(path: Path, *, line: bool = False) -> None:
    async with LedgerWriter(path, fsync=False) as writer:
        if line:
            await writer.write_durable(REC)


def test_a_created_ledger_never_written_is_removed(tmp_path: Path) -> None:
    path = tmp_path / "l.jsonl"
    anyio.run(_open_and_close, path)
    assert not path.exists()


def test_a_created_ledger_with_a_line_stays(tmp_path: Path) -> None:
    path = tmp_path / "l.jsonl"
    anyio.run(lambda: _open_and_close(path, line=True))
    assert [r["event"] for r in iter_records(path)] == ["run_started"]


def test_an_empty_ledger_that_was_there_stays(tmp_path: Path) -> None:
    path = tmp_path / "l.jsonl"
    path.touch()
    anyio.run(_open_and_close, path)
    assert path.exists()
    assert path.read_bytes() == b""


def test_an_open_that_meets_a_removed_ledger_opens_the_name_anew(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race: another writer removed its unused ledger between our open and our lock.
    Appending to the deleted file would lose every line; the name is opened again."""
    path = tmp_path / "l.jsonl"
    real = safe_file.open_or_create
    opened: list[int] = []

    def racing(name: str, flags: int, *, mode: int) -> tuple[int, bool]:
        fd, created = real(name, flags, mode=mode)
        if not opened:
            os.unlink(name)  # the writer that held the lock removed the file meanwhile
        opened.append(fd)
        return fd, created

    monkeypatch.setattr("orchestrator.ledger.opening.open_or_create", racing)
    fd, cut, created = open_ledger(os.fspath(path), fsync=False)
    try:
        assert len(opened) == 2
        assert (cut, created) == (0, True)
        assert os.fstat(fd).st_ino == os.stat(path).st_ino
    finally:
        os.close(fd)
