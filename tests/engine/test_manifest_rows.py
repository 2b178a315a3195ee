"""A row's rules, whatever its format: each field's check and the reason it gives."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.engine.manifest import RowError
from orchestrator.models import ReplicationTask
from tests.helpers.manifest_files import (
    DEST,
    HEADER,
    ITEM,
    ITEM2,
    PROJECT,
    csv_file,
    only_error,
    read,
)


@pytest.mark.parametrize(
    ("row", "field", "reason"),
    [
        (f"not-a-uuid,cn-east-2,{DEST},", "checkpoint_item_id", "is not a UUID"),
        (f",cn-east-2,{DEST},", "checkpoint_item_id", "required value is missing"),
        (f"{ITEM},,{DEST},", "destination_region", "required value is missing"),
        (f"{ITEM},cn-east-2,,", "destination_project_id", "required value is missing"),
        (f"{ITEM},CN-EAST-2,{DEST},", "destination_region", "lower case"),
        (f"{ITEM},eu,{DEST},", "destination_region", "is not a region name"),
        (f"{ITEM},cn-east-2,{DEST[:-1]},", "destination_project_id", "32 hex digits"),
        (f"{ITEM},cn-east-2,{DEST},xyz", "project_id", "is not a project id"),
    ],
)
def test_csv_field_errors(tmp_path: Path, row: str, field: str, reason: str) -> None:
    path = csv_file(tmp_path, f"{HEADER}{ITEM},cn-east-2,{DEST},\n{row}\n")
    rows = read(path)
    assert isinstance(rows[0], ReplicationTask)
    error = only_error(rows)
    assert (error.line, error.field) == (3, field)
    assert reason in error.reason
    assert error.path == str(path)
    assert str(error).startswith(f"{path}:3: field {field!r}: ")


def test_csv_optional_field_errors(tmp_path: Path) -> None:
    header = (
        "checkpoint_item_id,destination_region,destination_project_id,source_region,"
        "name,description,enable_acceleration\n"
    )
    rows = [
        f"{ITEM},cn-east-2,{DEST},cn-east-2,,,",  # 2: same region both sides
        f"{ITEM},cn-east-2,{DEST},North,,,",  # 3
        f"{ITEM},cn-east-2,{DEST},,{'n' * 256},,",  # 4
        f'{ITEM},cn-east-2,{DEST},,"tab\there",,',  # 5
        f"{ITEM},cn-east-2,{DEST},,,{'d' * 300},",  # 6
        f"{ITEM},cn-east-2,{DEST},,,,maybe",  # 7
        f"{ITEM},cn-east-2,{DEST},,{'n' * 255},,",  # 8: exactly the limit is fine
    ]
    result = read(csv_file(tmp_path, header + "\n".join(rows) + "\n"))
    errors = [(r.line, r.field, r.reason) for r in result if isinstance(r, RowError)]
    assert [e[:2] for e in errors] == [
        (2, "destination_region"),
        (3, "source_region"),
        (4, "name"),
        (5, "name"),
        (6, "description"),
        (7, "enable_acceleration"),
    ]
    assert "same as source_region" in errors[0][2]
    assert "256 characters" in errors[2][2]
    assert "control character" in errors[3][2]
    assert "'maybe' is not a boolean" in errors[5][2]
    assert isinstance(result[-1], ReplicationTask)


def test_missing_project_without_default(tmp_path: Path) -> None:
    path = csv_file(
        tmp_path, f"{HEADER}{ITEM},cn-east-2,{DEST},\n{ITEM2},cn-east-2,{DEST},{PROJECT}\n"
    )
    rows = read(path, default=None)
    error = only_error(rows)
    assert (error.line, error.field) == (2, "project_id")
    assert "--project-id" in error.reason
    assert "HUAWEICLOUD_SDK_PROJECT_ID" in error.reason
    assert (error.checkpoint_item_id, error.destination_region) == (ITEM, "cn-east-2")
    assert rows[1] == ReplicationTask(ITEM2, PROJECT, "cn-east-2", DEST, line=3)
