"""Reading a ledger: broken, blank and torn lines, where the whole lines end."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orchestrator.errors import LedgerError
from orchestrator.ledger.file import LedgerReader, iter_records
from orchestrator.ledger.opening import open_locked
from tests.helpers.ledger_records import read_all, rec, record_line

pytestmark = pytest.mark.anyio


def test_broken_middle_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    path.write_bytes(record_line(rec(1)) + b"{not json\n" + record_line(rec(3)))
    records = iter_records(path)
    assert next(records) == rec(1)
    with pytest.raises(LedgerError, match=rf"{path}:2: not a JSON line"):
        next(records)


def test_broken_last_line_with_newline_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    path.write_bytes(record_line(rec(1)) + b'{"v":1,"eve\n\n')
    assert read_all(path) == [rec(1)]


def test_non_object_line_and_newer_schema_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    path.write_bytes(b"[1,2]\n" + record_line(rec(2)))
    with pytest.raises(LedgerError, match=":1: not a ledger line"):
        read_all(path)
    path.write_bytes(record_line({**rec(1), "v": 2}))
    with pytest.raises(LedgerError, match="newer csbs-orchestrator"):
        read_all(path)


def test_blank_lines_are_skipped_and_missing_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    path.write_bytes(record_line(rec(1)) + b"\n  \n" + record_line(rec(2)))
    assert read_all(path) == [rec(1), rec(2)]
    with pytest.raises(LedgerError, match="cannot open"):
        read_all(tmp_path / "missing.jsonl")


def test_reads_many_lines(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    path.write_bytes(b"".join(record_line(rec(i)) for i in range(50_000)))
    count = 0
    for count, record in enumerate(iter_records(path), 1):  # noqa: B007 (count is the point)
        assert record["v"] == 1
    assert count == 50_000


@pytest.mark.parametrize(
    "torn",
    [b'{"v":1,"eve', b'{"v":1,"eve\n', record_line(rec(9)).rstrip(b"\n"), b"  "],
    ids=["no newline", "with newline", "whole but no newline", "blank"],
)
def test_a_reader_says_where_the_whole_lines_end(tmp_path: Path, torn: bytes) -> None:
    path = tmp_path / "ledger.jsonl"
    whole = record_line(rec(1)) + b"\n" + record_line(rec(2))
    path.write_bytes(whole + torn)
    reader = LedgerReader(path)
    list(reader)
    if torn.startswith(b'{"v":1,"event"'):  # a whole record that only lacks its newline
        assert (reader.end, reader.lines) == (len(whole) + len(torn), 4)
        # Folded, and kept: the writer adds its newline and appends. A reader from there
        # skips that newline (the line is counted once) and counts on.
        fd, cut = open_locked(os.fspath(path), fsync=False)
        os.close(fd)
        assert cut == 0
        assert path.read_bytes() == whole + torn + b"\n"
        with path.open("ab") as f:
            f.write(record_line(rec(5)) + b"{broken\n" + record_line(rec(7)))
        later = LedgerReader(path, start=reader.end, lines=reader.lines)
        records = iter(later)
        assert next(records) == rec(5)
        with pytest.raises(LedgerError, match=rf"{path}:6: not a JSON line"):
            next(records)
        return
    assert (reader.end, reader.lines) == (len(whole), 3)

    # The writer cuts the torn line and appends: a reader from there sees only the new lines.
    path.write_bytes(whole + record_line(rec(3)) + b"{broken\n" + record_line(rec(5)))
    later = LedgerReader(path, start=reader.end, lines=reader.lines)
    records = iter(later)
    assert next(records) == rec(3)
    with pytest.raises(LedgerError, match=rf"{path}:5: not a JSON line"):  # counted on
        next(records)


def test_a_line_folded_without_its_newline_that_then_grows_is_refused(tmp_path: Path) -> None:
    """A writer's lines end in a newline: bytes that continue a line already folded mean it
    was no whole line, and a reader from there says so instead of misreading the rest."""
    path = tmp_path / "ledger.jsonl"
    path.write_bytes(record_line(rec(1)) + record_line(rec(2)).rstrip(b"\n"))
    reader = LedgerReader(path)
    assert list(reader) == [rec(1), rec(2)]
    with path.open("ab") as f:
        f.write(b"trailing\n" + record_line(rec(3)))
    with pytest.raises(LedgerError, match=rf"{path}:2: the last line read has grown"):
        list(LedgerReader(path, start=reader.end, lines=reader.lines))
    with pytest.raises(LedgerError, match=rf"{path}:2: not a JSON line"):  # as from the start
        read_all(path)
