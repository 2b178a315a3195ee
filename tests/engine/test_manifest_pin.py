"""The manifest pin: the first read records, every later read is the same bytes or stops."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from orchestrator.engine.manifest import ManifestPin
from orchestrator.errors import ManifestChangedError

LINES = [f"line {n}\n".encode() for n in range(1, 11)]


def read_all(pin: ManifestPin, path: Path) -> list[bytes]:
    with path.open("rb") as f:
        return list(pin.lines(f))


def test_the_first_read_records_the_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_bytes(b"".join(LINES))
    pin = ManifestPin(str(path), block_lines=3)
    before = pin.sealed
    assert read_all(pin, path) == LINES
    assert (before, pin.sealed) == (False, True)
    assert pin.size == path.stat().st_size
    assert pin.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert read_all(pin, path) == LINES  # the same bytes verify


def test_a_changed_block_stops_before_any_of_its_lines(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_bytes(b"".join(LINES))
    pin = ManifestPin(str(path), block_lines=3)
    read_all(pin, path)
    path.write_bytes(b"".join([*LINES[:4], b"line X\n", *LINES[5:]]))  # in block 2 (4-6)
    seen: list[bytes] = []
    with path.open("rb") as f, pytest.raises(ManifestChangedError) as info:
        seen.extend(pin.lines(f))
    assert seen == LINES[:3]
    assert info.value.line == 4
    assert "changed during the run" in str(info.value)


def test_lines_added_after_the_last_block_stop_the_read(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_bytes(b"".join(LINES))
    pin = ManifestPin(str(path), block_lines=5)
    read_all(pin, path)
    path.write_bytes(b"".join([*LINES, b"line 11\n"]))
    with pytest.raises(ManifestChangedError) as info:
        read_all(pin, path)
    assert info.value.line == 11
