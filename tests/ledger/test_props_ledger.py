"""The ledger fold against generated ledgers (hypothesis): each test states its property.

The oracle is the fold itself on a clean file: whatever happens to a ledger (cut at any
byte, a snapshot taken at any line, lines appended after it), :class:`History` must say
exactly what it says about a fresh file holding only the ledger's complete lines.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from orchestrator.errors import LedgerError
from orchestrator.ledger.history import History
from orchestrator.ledger.opening import open_locked
from orchestrator.ledger.snapshot import snapshot_path
from tests.helpers.ledgerlines import RID, RID2, attempt, copy_status, key, line, result

REGIONS = ("cn-east-2", "cn-south-1")
ITEMS = range(4)
UNIVERSE = [key(n, region) for n in ITEMS for region in REGIONS]


@contextmanager
def scratch() -> Iterator[Path]:
    # Not tmp_path: a function-scoped fixture is shared by every example of a test.
    with tempfile.TemporaryDirectory() as tmp:
        yield Path(tmp)


# --- strategies -----------------------------------------------------------------------------

items = st.sampled_from(ITEMS)
regions = st.sampled_from(REGIONS)
record_ids = st.sampled_from([RID, RID2, None, "odd-record-id"])

ledger_lines = st.one_of(
    st.builds(lambda n, r, k: attempt(n, k, region=r), items, regions, st.integers(1, 3)),
    st.builds(
        lambda n, r, s, rid: result(n, s, rid, region=r),
        items,
        regions,
        st.sampled_from(["replicated", "already_replicated", "failed", "gave_up"]),
        record_ids,
    ),
    st.builds(
        lambda n, r, rid: result(n, "gave_up", rid, region=r) | {"outcome_unknown": True},
        items,
        regions,
        record_ids,
    ),
    st.builds(
        lambda n, r, s, rid: copy_status(n, s, rid, region=r),
        items,
        regions,
        st.sampled_from(["waiting_copy", "copying", "success", "fail"]),
        record_ids,
    ),
    st.builds(lambda n: line("result", status="rejected", manifest_line=n, field=None), items),
    st.just(line("run_started", manifest="/m.csv", source="manifest", settings={}, version="1")),
    st.builds(
        lambda r: line("run_finished", counts={}, reason=r), st.sampled_from([None, "signal"])
    ),
)


def encode(records: list[dict[str, Any]]) -> list[bytes]:
    return [orjson.dumps(r) + b"\n" for r in records]


def observe(history: History, *, with_ids: bool) -> dict[str, Any]:
    """Everything a reader of the fold can see, for the pairs the generated lines use."""
    seen: dict[str, Any] = {
        "pairs": len(history),
        "counts": history.counts(),
        "unknown": history.unknown_outcomes(),
        "runs": history.runs,
        "records": history.lines,
        "rejected": history.rejected,
        "skipped": history.skipped,
        "last_started": history.last_run_started,
        "last_finished": history.last_run_finished,
    }
    for k in UNIVERSE:
        seen[str(k)] = (
            history.status(k),
            history.unknown_outcome(k),
            history.copy_status(k),
            history.record_id(k) if with_ids else None,
        )
    return seen


def fold_of_lines(lines: list[bytes], *, with_ids: bool) -> dict[str, Any]:
    """The oracle: the fold of a fresh file holding exactly these whole lines."""
    with scratch() as tmp:
        path = tmp / "oracle.jsonl"
        path.write_bytes(b"".join(lines))
        return observe(History.load(path, record_ids=with_ids), with_ids=with_ids)


def complete_lines(data: bytes) -> list[bytes]:
    """The whole lines of ``data``: everything up to its last newline, and after it a
    complete record that only lacks its newline (kept by the writer, folded by readers).
    A torn tail (any other bytes after the last newline) is not a line."""
    end = data.rfind(b"\n") + 1
    lines = [raw + b"\n" for raw in data[:end].split(b"\n")[:-1]]
    if _is_record(data[end:]):
        lines.append(data[end:] + b"\n")
    return lines


def _is_record(raw: bytes) -> bool:
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return False
    return type(record) is dict and "v" in record and "event" in record


def save_snapshot_of(path: Path) -> None:
    history = History.load(path, record_ids=False)
    history.save_snapshot(path)


# --- properties -----------------------------------------------------------------------------


@given(records=st.lists(ledger_lines, max_size=20), data=st.data())
@example(records=[attempt(0)], data=None).via("a whole line without its newline")
def test_a_ledger_cut_at_any_byte_folds_as_its_complete_prefix(
    records: list[dict[str, Any]], data: st.DataObject | None
) -> None:
    """Valid lines cut at any byte (a crash while appending) fold exactly as the file of the
    complete lines before the cut does, with and without record ids: a cut just after a
    record's closing brace keeps that record, a cut anywhere else in a line drops the line."""
    whole = b"".join(encode(records))
    cut = len(whole) - 1 if data is None else data.draw(st.integers(0, len(whole)), label="cut")
    with scratch() as tmp:
        path = tmp / "ledger.jsonl"
        path.write_bytes(whole[:cut])
        for with_ids in (True, False):
            got = observe(History.load(path, record_ids=with_ids), with_ids=with_ids)
            assert got == fold_of_lines(complete_lines(whole[:cut]), with_ids=with_ids)
    if data is None:  # the example: the record that only lacks its newline is folded
        assert got["records"] == len(records)


@given(records=st.lists(ledger_lines, min_size=1, max_size=10), data=st.data())
def test_a_torn_last_line_is_never_folded(
    records: list[dict[str, Any]], data: st.DataObject
) -> None:
    """A last line cut anywhere before its closing brace folds as if it were not there."""
    lines = encode(records)
    last = lines[-1]
    cut = data.draw(st.integers(1, len(last) - 2), label="bytes of the last line written")
    with scratch() as tmp:
        path = tmp / "ledger.jsonl"
        path.write_bytes(b"".join(lines[:-1]) + last[:cut])
        for with_ids in (True, False):
            got = observe(History.load(path, record_ids=with_ids), with_ids=with_ids)
            assert got == fold_of_lines(lines[:-1], with_ids=with_ids)


@given(records=st.lists(ledger_lines, max_size=20), data=st.data())
def test_a_snapshot_at_any_line_changes_nothing(
    records: list[dict[str, Any]], data: st.DataObject
) -> None:
    """A snapshot saved after any line, then more lines appended and the file cut at any
    byte (even before the snapshot's end): loading folds exactly as the complete lines of
    the file do without any snapshot."""
    lines = encode(records)
    at = data.draw(st.integers(0, len(lines)), label="snapshot after line")
    whole = b"".join(lines)
    cut = data.draw(st.integers(0, len(whole)), label="cut")
    with scratch() as tmp:
        path = tmp / "ledger.jsonl"
        path.write_bytes(b"".join(lines[:at]))
        save_snapshot_of(path)
        path.write_bytes(whole[:cut])  # the same file (inode) grown or cut
        got = observe(History.load(path, record_ids=False), with_ids=False)
    assert got == fold_of_lines(complete_lines(whole[:cut]), with_ids=False)


@given(records=st.lists(ledger_lines, min_size=1, max_size=15), data=st.data())
def test_a_line_written_twice_in_a_row_changes_no_pair(
    records: list[dict[str, Any]], data: st.DataObject
) -> None:
    """A line repeated in place (a write retried after an error that was not one) leaves
    every pair's status, unknown flag, copy status and record id as they were."""
    lines = encode(records)
    i = data.draw(st.integers(0, len(lines) - 1), label="repeated line")
    twice = [*lines[: i + 1], lines[i], *lines[i + 1 :]]
    once, doubled = fold_of_lines(lines, with_ids=True), fold_of_lines(twice, with_ids=True)
    assert {k: v for k, v in once.items() if k.startswith("(")} == {
        k: v for k, v in doubled.items() if k.startswith("(")
    }


foreign_lines = st.sampled_from(
    [
        b"{not json\n",
        b'{"v": 1, "event": "attempt", "project_id": "a"\n',  # torn in the middle
        b"[1, 2, 3]\n",
        b'"a string"\n',
        b'{"v": 2, "event": "attempt"}\n',
        b'{"event": "attempt"}\n',
        b'{"v": "1", "event": "result"}\n',
        b"\x00\x00\x00\n",
        b"\xef\xbb\xbf{}\n",
    ]
)


@given(
    records=st.lists(ledger_lines, min_size=1, max_size=10),
    foreign=foreign_lines,
    data=st.data(),
)
def test_a_torn_or_foreign_line_before_the_end_is_refused_with_its_line(
    records: list[dict[str, Any]], foreign: bytes, data: st.DataObject
) -> None:
    """A line that is not a ledger line of this version, followed by valid lines, makes
    loading fail with LedgerError naming that line: it is never skipped or misread."""
    lines = encode(records)
    i = data.draw(st.integers(0, len(lines) - 1), label="foreign line before")
    with scratch() as tmp:
        path = tmp / "ledger.jsonl"
        path.write_bytes(b"".join([*lines[:i], foreign, *lines[i:]]))
        for with_ids in (True, False):
            with pytest.raises(LedgerError, match=f":{i + 1}: "):
                History.load(path, record_ids=with_ids)


# --- the ledger's life as a state machine ---------------------------------------------------


class LedgerLife(RuleBasedStateMachine):
    """A ledger appended to, torn by crashes, repaired by the writer's open, snapshotted:
    after every step, loading it (with the snapshot, and from scratch with record ids)
    folds exactly as the complete lines of the file do."""

    def __init__(self) -> None:
        super().__init__()
        self._tmp = tempfile.TemporaryDirectory()
        self.path = Path(self._tmp.name) / "ledger.jsonl"
        self.path.write_bytes(b"")

    def teardown(self) -> None:
        self._tmp.cleanup()

    def _bytes(self) -> bytes:
        return self.path.read_bytes()

    def _append(self, data: bytes) -> None:
        with self.path.open("ab") as f:
            f.write(data)

    def _torn(self) -> bool:
        data = self._bytes()
        return bool(data) and not data.endswith(b"\n")

    @precondition(lambda self: not self._torn())
    @rule(records=st.lists(ledger_lines, min_size=1, max_size=5))
    def append_lines(self, records: list[dict[str, Any]]) -> None:
        self._append(b"".join(encode(records)))

    @precondition(lambda self: not self._torn())
    @rule(record=ledger_lines, data=st.data())
    def crash_while_appending(self, record: dict[str, Any], data: st.DataObject) -> None:
        raw = encode([record])[0]
        self._append(raw[: data.draw(st.integers(1, len(raw) - 1), label="bytes written")])

    @precondition(lambda self: not self._torn())
    @rule(record=ledger_lines)
    def editor_drops_the_last_newline(self, record: dict[str, Any]) -> None:
        self._append(encode([record])[0].rstrip(b"\n"))

    @rule()
    def writer_opens(self) -> None:
        """The next run opens the ledger: a torn last line is cut, a complete record that
        only lacks its newline is kept and the newline added."""
        before = self._bytes()
        kept = complete_lines(before)
        fd, cut = open_locked(os.fspath(self.path), fsync=False)
        os.close(fd)
        assert not self._torn()
        assert cut >= 0
        assert complete_lines(self._bytes()) == kept

    @rule()
    def save_snapshot(self) -> None:
        save_snapshot_of(self.path)

    @rule()
    def lose_the_snapshot(self) -> None:
        Path(snapshot_path(self.path)).unlink(missing_ok=True)

    @invariant()
    def folds_as_its_complete_lines(self) -> None:
        lines = complete_lines(self._bytes())
        got = observe(History.load(self.path, record_ids=False), with_ids=False)
        assert got == fold_of_lines(lines, with_ids=False)
        got = observe(History.load(self.path, record_ids=True), with_ids=True)
        assert got == fold_of_lines(lines, with_ids=True)


TestLedgerLife = LedgerLife.TestCase
