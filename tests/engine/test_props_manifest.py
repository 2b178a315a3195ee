"""Manifest reading against generated files (hypothesis): each test states its property.

The profiles (small for ``make test``, large with ``CSBS_SLOW_TESTS=1``) are registered in
``conftest.py``.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import orjson
from hypothesis import example, given
from hypothesis import strategies as st

from orchestrator.engine.manifest import FIELDS, REQUIRED_FIELDS, RowError, iter_manifest
from orchestrator.engine.plan import Plan
from orchestrator.errors import ManifestError
from orchestrator.models import ReplicationTask

DEFAULT = "fedcba9876543210fedcba9876543210"


@contextmanager
def manifest_file(data: bytes, name: str) -> Iterator[Path]:
    # Not tmp_path: a function-scoped fixture is shared by every example of a test.
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        yield path


def read_all(path: Path) -> list[ReplicationTask | RowError]:
    return list(iter_manifest(path, default_project_id=DEFAULT))


# --- strategies -----------------------------------------------------------------------------

_hex = st.sampled_from("0123456789abcdefABCDEF")


def _hex_text(n: int) -> st.SearchStrategy[str]:
    return st.text(_hex, min_size=n, max_size=n)


uuids = st.tuples(*(_hex_text(n) for n in (8, 4, 4, 4, 12))).map("-".join)
projects = st.one_of(_hex_text(32), uuids)
regions = st.sampled_from(["cn-north-1", "cn-east-2", "ap-southeast-1", "la-south-2"])
# A source region equal to the destination is an invalid row: keep the two sets apart.
source_regions = st.sampled_from(["cn-south-1", "ap-southeast-3"])
# Free text as the careful path sees it: any printable unicode (no control characters, no
# surrogates), at most 255 characters once stripped.
free_text = st.text(
    st.characters(blacklist_categories=("Cc", "Cs")), min_size=0, max_size=40
).filter(lambda s: s.strip() == s)
bools = st.sampled_from(["true", "false", "TRUE", "yes", "no", "1", "0"])


@st.composite
def valid_rows(draw: st.DrawFn) -> dict[str, str]:
    row = {
        "checkpoint_item_id": draw(uuids),
        "destination_region": draw(regions),
        "destination_project_id": draw(projects),
    }
    optional: dict[str, st.SearchStrategy[str]] = {
        "project_id": projects,
        "source_region": source_regions,
        "name": free_text,
        "description": free_text,
        "enable_acceleration": bools,
    }
    for column, values in optional.items():
        if draw(st.booleans()):
            row[column] = draw(values)
    return row


def expected_task(row: dict[str, str], line: int) -> ReplicationTask:
    """What the reader must make of a valid row: ids lower-cased, blanks mean absent."""
    accel = row.get("enable_acceleration")
    return ReplicationTask(
        checkpoint_item_id=row["checkpoint_item_id"].lower(),
        project_id=(row.get("project_id") or DEFAULT).lower(),
        destination_region=row["destination_region"],
        destination_project_id=row["destination_project_id"].lower(),
        source_region=row.get("source_region") or None,
        name=row.get("name") or None,
        description=row.get("description") or None,
        enable_acceleration=None if not accel else accel.lower() in {"true", "yes", "1"},
        line=line,
    )


def to_csv(
    rows: list[dict[str, str]],
    columns: list[str],
    *,
    newline: str,
    quoting: Literal[0, 1, 2, 3],
    bom: bool,
) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=newline, quoting=quoting)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([row.get(c, "") for c in columns])
    return (b"\xef\xbb\xbf" if bom else b"") + out.getvalue().encode()


def to_jsonl(rows: list[dict[str, str]], *, newline: bytes) -> bytes:
    return b"".join(orjson.dumps(row) + newline for row in rows)


csv_layouts = st.fixed_dictionaries(
    {
        "extra": st.lists(st.sampled_from(FIELDS[3:]), unique=True),
        "order": st.randoms(use_true_random=False),
        "newline": st.sampled_from(["\n", "\r\n"]),
        "quoting": st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]),
        "bom": st.booleans(),
    }
)


def layout_columns(rows: list[dict[str, str]], layout: dict[str, Any]) -> list[str]:
    used = {c for row in rows for c in row}
    columns = [c for c in FIELDS if c in REQUIRED_FIELDS or c in used or c in layout["extra"]]
    layout["order"].shuffle(columns)
    return columns


# --- properties -----------------------------------------------------------------------------


@given(
    data=st.binary(max_size=2000)
    | st.text(max_size=400).map(lambda t: t.encode("utf-8", "surrogatepass")),
    name=st.sampled_from(["m.csv", "m.jsonl", "manifest"]),
)
@example(data=b"\xff\xfe" + "checkpoint_item_id\n".encode("utf-16-le"), name="m.csv")
@example(data=b'checkpoint_item_id,destination_region,destination_project_id\n"', name="m.csv")
@example(data=b"[]", name="m.jsonl")
def test_any_bytes_give_rows_or_a_manifest_error(data: bytes, name: str) -> None:
    """Any bytes at all, as CSV, JSON Lines or sniffed: the reader yields tasks and row
    errors, or raises ManifestError naming the file; never another exception. Every row
    error names a line that exists in the file."""
    with manifest_file(data, name) as path:
        error: str | None
        try:
            rows = read_all(path)
        except ManifestError as exc:
            error, rows = str(exc), []
        else:
            error = None
    if error is not None:
        assert str(path) in error
    physical = data.count(b"\n") + data.count(b"\r") + 1
    for row in rows:
        assert 1 <= row.line <= physical, row
        if isinstance(row, RowError):
            assert row.reason


@given(rows=st.lists(valid_rows(), max_size=12), layout=csv_layouts)
def test_valid_csv_rows_read_back_exactly(rows: list[dict[str, str]], layout: Any) -> None:
    """Valid rows written as CSV in any column order, quoting, line ending, with or without a
    BOM and unused optional columns, read back as exactly the tasks they describe, each with
    its physical line number (the header is line 1)."""
    columns = layout_columns(rows, layout)
    data = to_csv(
        rows, columns, newline=layout["newline"], quoting=layout["quoting"], bom=layout["bom"]
    )
    with manifest_file(data, "m.csv") as path:
        got = read_all(path)
    assert got == [expected_task(row, i + 2) for i, row in enumerate(rows)]


@given(rows=st.lists(valid_rows(), max_size=12), newline=st.sampled_from([b"\n", b"\r\n"]))
def test_valid_jsonl_rows_read_back_exactly(rows: list[dict[str, str]], newline: bytes) -> None:
    """Valid rows written as JSON Lines (any key order, either line ending) read back as
    exactly the tasks they describe, line numbers from 1."""
    with manifest_file(to_jsonl(rows, newline=newline), "m.jsonl") as path:
        got = read_all(path)
    assert got == [expected_task(row, i + 1) for i, row in enumerate(rows)]


_BREAKS = {
    "checkpoint_item_id": "not-a-uuid",
    "destination_region": "North China",
    "destination_project_id": "1234",
    "project_id": "xyz",
    "enable_acceleration": "maybe",
    "name": "x" * 256,
}


@given(
    rows=st.lists(
        st.tuples(valid_rows(), st.none() | st.sampled_from(sorted(_BREAKS))),
        min_size=1,
        max_size=12,
    ),
    layout=csv_layouts,
    fmt=st.sampled_from(["csv", "jsonl"]),
)
def test_invalid_rows_are_named_with_their_line(
    rows: list[tuple[dict[str, str], str | None]], layout: Any, fmt: str
) -> None:
    """Rows with one bad field among valid ones: each bad row becomes a RowError naming its
    own line and that field; every other row still becomes its task."""
    written = [row | ({broken: _BREAKS[broken]} if broken else {}) for row, broken in rows]
    if fmt == "csv":
        columns = layout_columns(written, layout)
        data = to_csv(
            written, columns, newline=layout["newline"], quoting=layout["quoting"], bom=False
        )
        first = 2
    else:
        data, first = to_jsonl(written, newline=b"\n"), 1
    with manifest_file(data, f"m.{fmt}") as path:
        got = read_all(path)
    assert len(got) == len(rows)
    for i, (out, (row, broken)) in enumerate(zip(got, rows, strict=True)):
        assert out.line == first + i
        if broken is None:
            assert out == expected_task(row, first + i)
        else:
            assert isinstance(out, RowError), out
            assert out.field == broken
            assert f":{first + i}:" in str(out)


@given(
    rows=st.lists(valid_rows(), max_size=15).flatmap(
        # Repeat some rows, and some pairs with another destination project: duplicates and
        # conflicts must be found the same way in both formats.
        lambda rs: st.lists(
            st.sampled_from(rs) | st.sampled_from(rs).map(_other_destination)
            if rs
            else valid_rows(),
            max_size=25,
        )
    ),
    layout=csv_layouts,
)
def test_csv_and_jsonl_of_the_same_rows_give_the_same_plan(
    rows: list[dict[str, str]], layout: Any
) -> None:
    """The same rows as CSV and as JSON Lines give the same plan: per-region counts,
    conflicts and the tasks to send (the line numbers differ by the CSV header)."""
    columns = layout_columns(rows, layout)
    csv_data = to_csv(
        rows, columns, newline=layout["newline"], quoting=layout["quoting"], bom=layout["bom"]
    )
    with (
        manifest_file(csv_data, "m.csv") as a,
        manifest_file(to_jsonl(rows, newline=b"\n"), "m.jsonl") as b,
    ):
        plan_csv = Plan.from_manifest(a, default_project_id=DEFAULT)
        plan_jsonl = Plan.from_manifest(b, default_project_id=DEFAULT)
        assert plan_csv.by_region == plan_jsonl.by_region
        assert [c.key for c in plan_csv.conflicts] == [c.key for c in plan_jsonl.conflicts]
        assert [tuple(n - 1 for n in c.lines) for c in plan_csv.conflicts] == [
            c.lines for c in plan_jsonl.conflicts
        ]
        sent_csv = [dataclasses.replace(w.task, line=w.task.line - 1) for w in plan_csv.work()]
        sent_jsonl = [w.task for w in plan_jsonl.work()]
    assert sent_csv == sent_jsonl


def _other_destination(row: dict[str, str]) -> dict[str, str]:
    flipped = row["destination_project_id"].lower().replace("a", "b").replace("0", "1")
    return row | {"destination_project_id": flipped}
