"""Compressed ledgers: the schedule's retention gzips the closed ones, readers read them as the
plain ones, and no writer ever appends to one.

Properties:

* a ``.jsonl.gz`` ledger reads (``iter_records``, ``LedgerReader``, ``last_record``,
  ``History``) exactly as the plain ledger it was made from;
* a truncated ``.gz`` is refused with the ledger's name, never misread;
* retention gzips every kept dated ledger but the newest and the one in use, deletes the
  snapshot with it, leaves a locked ledger alone, and deletes compressed ledgers beyond
  ``keep`` as it deletes plain ones;
* a writer refuses a ``.gz`` path, and a plain path whose ``.gz`` sits beside it; ``resume``
  of a compressed ledger says what to do (the ledger exit code).
"""

from __future__ import annotations

import fcntl
import gzip
import os
from pathlib import Path

import anyio
import pytest

from orchestrator.cli.main import main
from orchestrator.errors import LedgerError
from orchestrator.exitcodes import ExitCode
from orchestrator.ledger.archive import compress_closed, compress_ledger
from orchestrator.ledger.file import LedgerReader, LedgerWriter, iter_records, last_record
from orchestrator.ledger.history import History
from orchestrator.ledger.snapshot import snapshot_path
from orchestrator.scheduling.retention import prune_ledgers
from tests.helpers import ledgerlines as ll


def _ledger(path: Path, pairs: int = 60) -> Path:
    records = [
        ll.line("run_started", manifest="/m.csv", source="manifest", settings={}),
        *(r for n in range(pairs) for r in (ll.attempt(n), ll.result(n, "replicated", ll.RID))),
        ll.line("run_finished", counts={"replicated": pairs}, exit_code=0),
    ]
    return ll.write(path, *records)


def _gzip(plain: Path) -> Path:
    packed = plain.with_name(plain.name + ".gz")
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    return packed


def test_a_compressed_ledger_reads_as_the_plain_one(tmp_path: Path) -> None:
    plain = _ledger(tmp_path / "l.jsonl")
    packed = _gzip(plain)
    assert list(iter_records(packed)) == list(iter_records(plain))
    assert last_record(packed, "run_started") == last_record(plain, "run_started")
    assert last_record(packed, "copy_status") is None
    a, b = LedgerReader(plain), LedgerReader(packed)
    assert list(a) == list(b)
    assert (a.end, a.lines) == (b.end, b.lines)
    history, expected = History.load(packed), History.load(plain)
    assert history.counts() == expected.counts()
    assert history.record_id(ll.key(3)) == expected.record_id(ll.key(3)) == ll.RID


def test_a_truncated_compressed_ledger_is_refused(tmp_path: Path) -> None:
    packed = _gzip(_ledger(tmp_path / "l.jsonl", pairs=400))
    packed.write_bytes(packed.read_bytes()[: packed.stat().st_size // 2])
    with pytest.raises(LedgerError, match=r"l\.jsonl\.gz.*cannot read the ledger"):
        list(iter_records(packed))
    with pytest.raises(LedgerError, match=r"l\.jsonl\.gz.*cannot read the ledger"):
        last_record(packed, "run_finished")


def _dated(directory: Path, stamps: list[str]) -> list[Path]:
    return [_ledger(directory / f"ledger-{s}.jsonl") for s in stamps]


def test_retention_compresses_the_closed_ledgers_it_keeps(tmp_path: Path) -> None:
    stamps = ["20260325T0130Z", "20260326T0130Z", "20260327T0130Z", "20260328T0130Z"]
    paths = _dated(tmp_path, stamps)
    before = {p.name: list(iter_records(p)) for p in paths}
    Path(snapshot_path(paths[2])).write_bytes(b"")
    (tmp_path / "ledger-manual.jsonl").write_text("{}\n")
    removed = prune_ledgers(tmp_path, keep=3, in_use=paths[3])
    assert [p.name for p in removed] == ["ledger-20260325T0130Z.jsonl"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "ledger-20260326T0130Z.jsonl.gz",
        "ledger-20260327T0130Z.jsonl.gz",  # its snapshot went with the plain file
        "ledger-20260328T0130Z.jsonl",  # in use (and the newest)
        "ledger-manual.jsonl",
    ]
    for name in ("ledger-20260326T0130Z.jsonl", "ledger-20260327T0130Z.jsonl"):
        packed = tmp_path / f"{name}.gz"
        assert list(iter_records(packed)) == before[name]
        assert packed.stat().st_size < len(gzip.decompress(packed.read_bytes())) / 4
        assert packed.stat().st_mode & 0o777 == 0o600

    # The next nights: compressed ledgers count towards keep and go like plain ones.
    _dated(tmp_path, ["20260329T0130Z"])
    removed = prune_ledgers(tmp_path, keep=2, in_use=tmp_path / "ledger-20260329T0130Z.jsonl")
    assert sorted(p.name for p in removed) == [
        "ledger-20260326T0130Z.jsonl.gz",
        "ledger-20260327T0130Z.jsonl.gz",
    ]
    assert sorted(p.name for p in tmp_path.glob("ledger-2*")) == [
        "ledger-20260328T0130Z.jsonl.gz",
        "ledger-20260329T0130Z.jsonl",
    ]


def test_retention_leaves_a_ledger_being_written_alone(tmp_path: Path) -> None:
    paths = _dated(tmp_path, ["20260326T0130Z", "20260327T0130Z", "20260328T0130Z"])
    fd = os.open(paths[1], os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a resume is writing it
        assert compress_closed(tmp_path, 3) == []
        assert compress_ledger(paths[1]) is False
    finally:
        os.close(fd)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "ledger-20260326T0130Z.jsonl.gz",
        "ledger-20260327T0130Z.jsonl",
        "ledger-20260328T0130Z.jsonl",
    ]


async def _open_writer(path: Path) -> None:
    async with LedgerWriter(path, fsync=False):
        pass


def test_no_writer_appends_to_a_compressed_ledger(tmp_path: Path) -> None:
    plain = _ledger(tmp_path / "l.jsonl")
    assert compress_ledger(plain) is True
    packed = tmp_path / "l.jsonl.gz"
    with pytest.raises(LedgerError, match=r"never appended to: decompress it first \(gunzip"):
        anyio.run(_open_writer, packed)
    # A new, empty ledger under the plain name would forget every pair done.
    with pytest.raises(LedgerError, match=r"was compressed into .*l\.jsonl\.gz"):
        anyio.run(_open_writer, plain)
    assert not plain.exists()


def test_resume_of_a_compressed_ledger_says_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text("checkpoint_item_id,project_id,destination_region\n")
    plain = _ledger(tmp_path / "l.jsonl")
    compress_ledger(plain)
    code = main(["resume", "--ledger", str(tmp_path / "l.jsonl.gz")])
    err = capsys.readouterr().err
    assert code == ExitCode.LEDGER, err
    assert "decompress it first (gunzip" in err
    assert "Traceback" not in err
