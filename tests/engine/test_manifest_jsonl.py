"""The JSON Lines manifest: one object per line, the fast and careful paths."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from orchestrator.engine.manifest import RowError
from orchestrator.errors import ManifestError
from orchestrator.models import ReplicationTask
from tests.helpers.manifest_files import BASE, DEFAULT, DEST, ITEM, PROJECT, jsonl_file, read


def test_jsonl_rows(tmp_path: Path) -> None:
    path = jsonl_file(
        tmp_path,
        BASE,
        b"",
        {**BASE, "project_id": PROJECT, "enable_acceleration": True, "name": " n "},
        {**BASE, "enable_acceleration": "No", "source_region": "cn-north-1", "description": None},
        {**BASE, "project_id": None},
    )
    assert read(path) == [
        ReplicationTask(ITEM, DEFAULT, "cn-east-2", DEST, line=1),
        ReplicationTask(ITEM, PROJECT, "cn-east-2", DEST, None, "n", None, True, 3),
        ReplicationTask(ITEM, DEFAULT, "cn-east-2", DEST, "cn-north-1", None, None, False, 4),
        ReplicationTask(ITEM, DEFAULT, "cn-east-2", DEST, line=5),
    ]


def test_jsonl_careful_path_matches_fast_path(tmp_path: Path) -> None:
    fast = jsonl_file(tmp_path, {**BASE, "project_id": PROJECT}, name="fast.jsonl")
    careful = jsonl_file(
        tmp_path,
        {
            "checkpoint_item_id": f" {ITEM.upper()} ",
            "destination_region": "cn-east-2 ",
            "destination_project_id": DEST.upper(),
            "project_id": PROJECT.upper(),
        },
        name="careful.jsonl",
    )
    assert read(fast) == read(careful)


def test_jsonl_row_errors(tmp_path: Path) -> None:
    path = jsonl_file(
        tmp_path,
        {**BASE, "colour": "red"},  # 1
        b'{"checkpoint_item_id": ',  # 2
        b"[1, 2]",  # 3
        b'{"name": "\xff"}',  # 4
        {**BASE, "destination_project_id": 123},  # 5
        {**BASE, "enable_acceleration": "perhaps"},  # 6
        {**BASE, "checkpoint_item_id": "x"},  # 7
        BASE,  # 8
    )
    rows = read(path)
    errors = [(r.line, r.field) for r in rows if isinstance(r, RowError)]
    assert errors == [
        (1, "colour"),
        (2, None),
        (3, None),
        (4, None),
        (5, "destination_project_id"),
        (6, "enable_acceleration"),
        (7, "checkpoint_item_id"),
    ]
    reasons = [r.reason for r in rows if isinstance(r, RowError)]
    assert "unknown key" in reasons[0]
    assert "invalid JSON" in reasons[1]
    assert "not a JSON object" in reasons[2]
    assert "not valid UTF-8" in reasons[3]
    assert "must be a string" in reasons[4]
    assert isinstance(rows[-1], ReplicationTask)
    assert rows[-1].line == 8
    first = rows[0]
    assert isinstance(first, RowError)
    assert (first.checkpoint_item_id, first.destination_region) == (ITEM, "cn-east-2")


def test_jsonl_bom_and_json_array(tmp_path: Path) -> None:
    path = tmp_path / "m.ndjson"
    path.write_bytes(b"\xef\xbb\xbf" + orjson.dumps(BASE) + b"\n")
    assert read(path) == [ReplicationTask(ITEM, DEFAULT, "cn-east-2", DEST, line=1)]
    array = tmp_path / "m.json"
    array.write_bytes(b"  [" + orjson.dumps(BASE) + b"]")
    with pytest.raises(ManifestError, match="JSON array"):
        read(array)
