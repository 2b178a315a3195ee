"""Manifest reading: the entry points, format detection, the file as a whole, scale."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from orchestrator.engine.manifest import (
    RowError,
    detect_format,
    iter_manifest,
    iter_manifest_fields,
)
from orchestrator.errors import ConfigError, ManifestError
from orchestrator.models import ReplicationTask
from tests.helpers.manifest_files import BASE, DEFAULT, DEST, HEADER, ITEM, csv_file, read
from tests.helpers.manifests import make_rows, write_manifest


def test_bad_default_project_is_a_config_error(tmp_path: Path) -> None:
    path = csv_file(tmp_path, HEADER)
    with pytest.raises(ConfigError, match="--project-id"):
        read(path, default="not-hex")


def test_empty_manifests_have_no_rows(tmp_path: Path) -> None:
    assert read(csv_file(tmp_path, "")) == []
    assert read(csv_file(tmp_path, "\n\n", "blank.csv")) == []
    assert read(csv_file(tmp_path, HEADER, "header.csv")) == []
    assert read(csv_file(tmp_path, "", "empty.jsonl")) == []


def test_unreadable_manifest(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="cannot open") as info:
        iter_manifest(tmp_path / "missing.csv", default_project_id=None)
    assert info.value.line is None
    with pytest.raises(ManifestError, match="cannot"):
        iter_manifest(tmp_path, default_project_id=None)


def test_only_lines_selects_rows(tmp_path: Path) -> None:
    rows = "".join(f"{ITEM},cn-east-2,{DEST},\n" for _ in range(5))
    path = csv_file(tmp_path, HEADER + rows)
    only = bytearray(6)
    only[3] = only[5] = 1
    got = list(iter_manifest(path, default_project_id=DEFAULT, only_lines=only))
    assert [r.line for r in got] == [3, 5]


def test_format_detection(tmp_path: Path) -> None:
    for name, fmt in [("a.csv", "csv"), ("a.JSONL", "jsonl"), ("a.ndjson", "jsonl")]:
        assert detect_format(tmp_path / name) == fmt  # by extension: no need to exist
    sniffed = tmp_path / "rows.txt"
    sniffed.write_bytes(b"\xef\xbb\xbf\n  " + orjson.dumps(BASE) + b"\n")
    assert detect_format(sniffed) == "jsonl"
    assert read(sniffed) == [ReplicationTask(ITEM, DEFAULT, "cn-east-2", DEST, line=2)]
    plain = tmp_path / "rows"
    plain.write_text(f"{HEADER}{ITEM},cn-east-2,{DEST},\n")
    assert detect_format(plain) == "csv"
    assert len(read(plain)) == 1


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_fields_stream_matches_tasks(tmp_path: Path, fmt: Any) -> None:
    path = tmp_path / f"m.{fmt}"
    write_manifest(path, make_rows(300, seed=3, invalid_rate=0.05, names=True), fmt)
    tasks = list(iter_manifest(path, default_project_id=None))
    fields = list(iter_manifest_fields(path, default_project_id=None))
    assert len(tasks) == len(fields) == 300
    for task, row in zip(tasks, fields, strict=True):
        if isinstance(task, RowError):
            assert row == task
        else:
            assert isinstance(row, tuple)
            assert ReplicationTask(*row) == task


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_fifty_thousand_rows(tmp_path: Path, fmt: Any) -> None:
    path = tmp_path / f"big.{fmt}"
    written = write_manifest(path, make_rows(50_000, seed=11, invalid_rate=0.01), fmt)
    assert written == 50_000
    tasks = errors = 0
    last_line = 0
    for row in iter_manifest(path, default_project_id=None):
        if isinstance(row, RowError):
            errors += 1
            assert row.field == "checkpoint_item_id"
        else:
            tasks += 1
        assert row.line > last_line
        last_line = row.line
    assert tasks + errors == 50_000
    assert 300 < errors < 700
    assert last_line == (50_001 if fmt == "csv" else 50_000)
