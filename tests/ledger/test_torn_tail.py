"""A line a crash tore: cut when the ledger is next opened for writing, skipped by readers."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.errors import LedgerError
from orchestrator.ledger.file import LedgerWriter
from tests.helpers.ledger_records import read_all, rec, record_line

pytestmark = pytest.mark.anyio


async def test_torn_tail_is_cut_on_open(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    torn = record_line(rec(3))[:40]
    path.write_bytes(record_line(rec(1)) + record_line(rec(2)) + torn)
    assert read_all(path) == [rec(1), rec(2)]  # readers skip it too
    async with LedgerWriter(path) as ledger:
        assert ledger.repaired_bytes == len(torn)
        ledger.write(rec(4))
    assert read_all(path) == [rec(1), rec(2), rec(4)]


async def test_torn_only_line_is_cut_to_empty(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    path.write_bytes(b'{"v":1,"ev')
    async with LedgerWriter(path) as ledger:
        assert ledger.repaired_bytes == 10
        assert path.stat().st_size == 0
        ledger.write(rec(1))
    assert read_all(path) == [rec(1)]


async def test_long_torn_tail_spanning_read_chunks(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    torn = b'{"error_msg":"' + b"x" * 200_000
    path.write_bytes(record_line(rec(1)) + torn)
    async with LedgerWriter(path) as ledger:
        assert ledger.repaired_bytes == len(torn)
    assert read_all(path) == [rec(1)]


@pytest.mark.parametrize(
    "broken",
    [
        b'{"v":1,"eve\n',
        b"{not json\n  \n\n",
        b"\x00\x00\x00\n",
        b"x" * 70_000 + b"\n" + b" \n" * 40_000,  # longer than a read, then blanks
        # Torn with its newline, then torn without: the torn tail is cut, and so is the
        # broken line it leaves last (neither was ever folded).
        b'{"v":1,"event":"attempt",\n{"v":1,"ev',
    ],
    ids=["torn, with newline", "then blanks", "zeros", "spanning read chunks", "twice"],
)
async def test_a_broken_last_line_with_its_newline_is_cut_on_open(
    tmp_path: Path, broken: bytes
) -> None:
    """Readers skip a last line that does not parse, newline or not: the writer cuts it, so
    the lines it appends never make it a broken line in the middle (refused by every load)."""
    path = tmp_path / "ledger.jsonl"
    path.write_bytes(record_line(rec(1)) + record_line(rec(2)) + broken)
    if broken.endswith(b"\n"):
        assert read_all(path) == [rec(1), rec(2)]  # readers skip it
    async with LedgerWriter(path) as ledger:
        assert ledger.repaired_bytes == len(broken)
        ledger.write(rec(4))
    assert read_all(path) == [rec(1), rec(2), rec(4)]


@pytest.mark.parametrize("last", [b"[1, 2]\n", b"{}\n", b'{"v": 1}\n\n', b'"text"\n'])
async def test_a_last_line_that_is_json_but_no_record_is_left_for_the_reader_to_refuse(
    tmp_path: Path, last: bytes
) -> None:
    """Not a torn write (it parses): this file is not (only) a ledger, and nothing is cut."""
    path = tmp_path / "ledger.jsonl"
    path.write_bytes(record_line(rec(1)) + last)
    with pytest.raises(LedgerError, match=rf"{path}:2: not a ledger line"):
        read_all(path)
    async with LedgerWriter(path) as ledger:
        assert ledger.repaired_bytes == 0
    assert path.read_bytes() == record_line(rec(1)) + last
