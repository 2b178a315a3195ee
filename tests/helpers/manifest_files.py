"""Small manifests written for the reader's tests, and the ids they use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from orchestrator.engine.manifest import RowError, iter_manifest
from orchestrator.models import ReplicationTask

__all__ = [
    "BASE",
    "DEFAULT",
    "DEST",
    "DEST_UUID",
    "HEADER",
    "ITEM",
    "ITEM2",
    "PROJECT",
    "csv_file",
    "jsonl_file",
    "only_error",
    "read",
]

ITEM = "8b0851a8-adf3-4f4c-a914-dead6c1d8d9d"
ITEM2 = "9c1962b9-beb4-4f5d-ba25-ebbe7d2e9e0e"
PROJECT = "0123456789abcdef0123456789abcdef"
DEST = "e0b97bac532c4c5196fa4b3a32253be4"
DEST_UUID = "e0b97bac-532c-4c51-96fa-4b3a32253be4"
DEFAULT = "fedcba9876543210fedcba9876543210"
HEADER = "checkpoint_item_id,destination_region,destination_project_id,project_id\n"

#: The three required keys of a JSON Lines row.
BASE = {
    "checkpoint_item_id": ITEM,
    "destination_region": "cn-east-2",
    "destination_project_id": DEST,
}


def read(path: Path, default: str | None = DEFAULT) -> list[ReplicationTask | RowError]:
    return list(iter_manifest(path, default_project_id=default))


def csv_file(tmp_path: Path, text: str | bytes, name: str = "m.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def only_error(rows: list[ReplicationTask | RowError]) -> RowError:
    errors = [r for r in rows if isinstance(r, RowError)]
    assert len(errors) == 1, rows
    return errors[0]


def jsonl_file(tmp_path: Path, *lines: Any, name: str = "m.jsonl") -> Path:
    path = tmp_path / name
    path.write_bytes(
        b"".join(
            (line if isinstance(line, bytes) else orjson.dumps(line)) + b"\n" for line in lines
        )
    )
    return path
