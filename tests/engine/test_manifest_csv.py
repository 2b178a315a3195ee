"""The CSV manifest: header, records over several lines, the fast and careful paths."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from orchestrator.engine.manifest import RowError
from orchestrator.errors import ManifestError
from orchestrator.models import ReplicationTask
from tests.helpers.manifest_files import (
    DEFAULT,
    DEST,
    DEST_UUID,
    HEADER,
    ITEM,
    ITEM2,
    PROJECT,
    csv_file,
    only_error,
    read,
)


def test_csv_rows_become_tasks_with_line_numbers(tmp_path: Path) -> None:
    path = csv_file(
        tmp_path,
        HEADER + f"{ITEM},cn-east-2,{DEST},{PROJECT}\n\n{ITEM2},cn-south-1,{DEST_UUID},\n",
    )
    assert read(path) == [
        ReplicationTask(ITEM, PROJECT, "cn-east-2", DEST, line=2),
        ReplicationTask(ITEM2, DEFAULT, "cn-south-1", DEST_UUID, line=4),  # blank line 3
    ]


def test_csv_optional_columns(tmp_path: Path) -> None:
    header = (
        "name,checkpoint_item_id,destination_region,destination_project_id,"
        "source_region,description,enable_acceleration\n"
    )
    path = csv_file(
        tmp_path,
        header
        + f"nightly copy,{ITEM},cn-east-2,{DEST},cn-north-1,keep 30 days,TRUE\n"
        + f",{ITEM2},cn-east-2,{DEST},,,no\n"
        + f"x,{ITEM2},cn-south-1,{DEST},,, \n",
    )
    assert read(path) == [
        ReplicationTask(
            ITEM, DEFAULT, "cn-east-2", DEST, "cn-north-1", "nightly copy", "keep 30 days", True, 2
        ),
        ReplicationTask(ITEM2, DEFAULT, "cn-east-2", DEST, enable_acceleration=False, line=3),
        ReplicationTask(ITEM2, DEFAULT, "cn-south-1", DEST, name="x", line=4),
    ]


def test_bom_crlf_and_header_case_are_tolerated(tmp_path: Path) -> None:
    text = "\ufeffCheckpoint_Item_ID, destination_region ,DESTINATION_PROJECT_ID\r\n"
    text += f"{ITEM},cn-east-2,{DEST}\r\n"
    assert read(csv_file(tmp_path, text)) == [
        ReplicationTask(ITEM, DEFAULT, "cn-east-2", DEST, line=2)
    ]


def test_careful_path_builds_the_same_tasks_as_the_fast_path(tmp_path: Path) -> None:
    columns = [
        "checkpoint_item_id",
        "destination_region",
        "destination_project_id",
        "project_id",
        "source_region",
        "name",
        "description",
        "enable_acceleration",
    ]
    rows = [
        [ITEM, "cn-east-2", DEST, PROJECT, "cn-north-1", "a name", "", "yes"],
        [ITEM2, "la-south-2", DEST_UUID, "", "", "", "described", "0"],
        [ITEM, "ap-southeast-3", DEST, PROJECT, "", "", "", ""],
    ]
    plain = io.StringIO()
    csv.writer(plain, lineterminator="\n").writerows([columns, *rows])
    quoted = io.StringIO()  # quotes fail the fast expression: the careful path reads these
    csv.writer(quoted, quoting=csv.QUOTE_ALL, lineterminator="\n").writerows([columns, *rows])
    fast = read(csv_file(tmp_path, plain.getvalue(), "fast.csv"))
    careful = read(csv_file(tmp_path, quoted.getvalue(), "careful.csv"))
    assert all(isinstance(t, ReplicationTask) for t in fast)
    assert fast == careful
    # Ids are case-insensitive and blanks around values do not matter.
    shouty = f"{HEADER}  {ITEM.upper()} , cn-east-2 ,{DEST.upper()},{PROJECT.upper()}\n"
    assert read(csv_file(tmp_path, shouty, "shouty.csv")) == [
        ReplicationTask(ITEM, PROJECT, "cn-east-2", DEST, line=2)
    ]


def test_wrong_cell_count_is_a_row_error(tmp_path: Path) -> None:
    path = csv_file(
        tmp_path,
        f"{HEADER}{ITEM},cn-east-2,{DEST}\n{ITEM},cn-east-2,{DEST},{PROJECT},extra\n",
    )
    first, second = read(path)
    assert isinstance(first, RowError)
    assert isinstance(second, RowError)
    assert (first.line, first.field) == (2, None)
    assert "3 cells but the header has 4" in first.reason
    assert first.checkpoint_item_id == ITEM
    assert second.line == 3
    assert "5 cells" in second.reason


def test_bad_utf8_costs_one_row(tmp_path: Path) -> None:
    body = HEADER.encode()
    body += f"{ITEM},cn-east-2,{DEST},\n".encode()
    body += b"\xff\xfe,cn-east-2,x,\n"
    body += f"{ITEM2},cn-east-2,{DEST},\n".encode()
    rows = read(csv_file(tmp_path, body))
    assert [type(r).__name__ for r in rows] == ["ReplicationTask", "RowError", "ReplicationTask"]
    error = rows[1]
    assert isinstance(error, RowError)
    assert error.line == 3
    assert "not valid UTF-8" in error.reason
    assert isinstance(rows[2], ReplicationTask)
    assert rows[2].line == 4


def test_multiline_quoted_value_keeps_physical_line_numbers(tmp_path: Path) -> None:
    header = "checkpoint_item_id,destination_region,destination_project_id,description\n"
    text = (
        header
        + f'{ITEM},cn-east-2,{DEST},"two\nlines"\n'  # lines 2-3: a newline is not allowed
        + f"{ITEM2},cn-east-2,{DEST},fine\n"  # line 4
        + f'{ITEM},cn-south-1,{DEST},"never closed\n'  # line 5 to the end
        + f"{ITEM2},cn-south-1,{DEST},\n"
    )
    rows = read(csv_file(tmp_path, text))
    assert len(rows) == 3
    assert isinstance(rows[0], RowError)
    assert (rows[0].line, rows[0].field) == (2, "description")
    assert rows[1] == ReplicationTask(ITEM2, DEFAULT, "cn-east-2", DEST, description="fine", line=4)
    assert isinstance(rows[2], RowError)
    assert rows[2].line == 5
    assert "not closed" in rows[2].reason


def test_csv_syntax_error_is_a_row_error(tmp_path: Path) -> None:
    text = f'{HEADER}{ITEM},"cn-east-2"x,{DEST},\n{ITEM2},cn-east-2,{DEST},\n'
    rows = read(csv_file(tmp_path, text))
    error = only_error(rows)
    assert error.line == 2
    assert "CSV syntax" in error.reason


@pytest.mark.parametrize(
    ("header", "field", "reason"),
    [
        (
            "checkpoint_item_id,destination_region,destination_project_id,colour",
            "colour",
            "unknown column",
        ),
        ("checkpoint_item_id,destination_region", "destination_project_id", "required column"),
        (
            "checkpoint_item_id,destination_region,destination_project_id,name,name",
            "name",
            "more than once",
        ),
        (
            "checkpoint_item_id,destination_region,destination_project_id,",
            "(empty)",
            "unknown column",
        ),
    ],
)
def test_bad_header_is_fatal(tmp_path: Path, header: str, field: str, reason: str) -> None:
    path = csv_file(tmp_path, f"\n{header}\n{ITEM},cn-east-2,{DEST}\n")
    with pytest.raises(ManifestError, match=reason) as info:
        read(path)
    assert (info.value.path, info.value.line, info.value.field_name) == (str(path), 2, field)


def test_bad_utf8_in_header_is_fatal(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="UTF-8") as info:
        read(csv_file(tmp_path, b"checkpoint_item_id,\xff\n"))
    assert info.value.line == 1
