"""Manifest reading: both formats, validation with line numbers, the fast and careful paths."""

from __future__ import annotations

import csv
import io
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
from tests.helpers.manifests import make_rows, write_manifest

ITEM = "8b0851a8-adf3-4f4c-a914-dead6c1d8d9d"
ITEM2 = "9c1962b9-beb4-4f5d-ba25-ebbe7d2e9e0e"
PROJECT = "0123456789abcdef0123456789abcdef"
DEST = "e0b97bac532c4c5196fa4b3a32253be4"
DEST_UUID = "e0b97bac-532c-4c51-96fa-4b3a32253be4"
DEFAULT = "fedcba9876543210fedcba9876543210"
HEADER = "checkpoint_item_id,destination_region,destination_project_id,project_id\n"


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


# --- CSV ------------------------------------------------------------------------------------


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


def test_bad_default_project_is_a_config_error(tmp_path: Path) -> None:
    path = csv_file(tmp_path, HEADER)
    with pytest.raises(ConfigError, match="--project-id"):
        read(path, default="not-hex")


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


# --- JSON Lines -----------------------------------------------------------------------------


def jsonl_file(tmp_path: Path, *lines: Any, name: str = "m.jsonl") -> Path:
    path = tmp_path / name
    path.write_bytes(
        b"".join(
            (line if isinstance(line, bytes) else orjson.dumps(line)) + b"\n" for line in lines
        )
    )
    return path


BASE = {
    "checkpoint_item_id": ITEM,
    "destination_region": "cn-east-2",
    "destination_project_id": DEST,
}


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


# --- the light stream and scale -------------------------------------------------------------


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
