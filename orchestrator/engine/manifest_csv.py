"""The CSV manifest: its header, its records (a quoted value may span lines), its rows.

A header names the columns (any order, any case); each later line first meets the *fast
path*, one regular expression built from the header that only matches a plain line whose
values are certainly valid, and otherwise the careful path
(:func:`~orchestrator.engine.manifest_rows.validate`) that says what is wrong.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final, TypeVar

from orchestrator.engine.manifest_rows import (
    BOM,
    CBR_MANIFEST,
    CBR_ONLY,
    FIELDS,
    KNOWN,
    PROJECT_LC,
    REGION,
    REQUIRED_FIELDS,
    TRUE,
    UUID_LC,
    Make,
    RowError,
    Values,
    encoding_reason,
    parse_bool_text,
    remake,
    validate,
)
from orchestrator.errors import ManifestError
from orchestrator.models import ReplicationTask

__all__ = ["csv_rows"]

#: A quoted CSV value may span lines, but not without end: past this, report the record.
_MAX_RECORD_LINES: Final = 100

#: One capturing group per column for the CSV fast path: unquoted, already-valid values only.
_FAST_CELL: Final = {
    "checkpoint_item_id": f"({UUID_LC})",
    "destination_region": f"({REGION})",
    "destination_project_id": f"({PROJECT_LC})",
    "project_id": f"({PROJECT_LC})?",
    "source_region": f"({REGION})?",
    "name": r'([^",\x00-\x1f\x7f]{0,255})',
    "description": r'([^",\x00-\x1f\x7f]{0,255})',
    "enable_acceleration": r"((?i:true|false|yes|no|1|0))?",
}

#: The order in which the CSV fast path picks its values out of a match.
_PICK_ORDER: Final = (
    "checkpoint_item_id",
    "destination_region",
    "destination_project_id",
    "project_id",
    "source_region",
    "name",
    "description",
    "enable_acceleration",
)


_T = TypeVar("_T")


def csv_rows(
    name: str,
    lines: Iterator[tuple[int, bytes]],
    default_project: str | None,
    *,
    only: bytes | bytearray | None,
    make: Make[_T],
) -> Iterator[_T | RowError]:
    """The rows of a CSV manifest's numbered lines, after its header (none for an empty
    file). The fast path is inlined: it runs once per row."""
    columns = _read_header(name, lines)
    if columns is None:
        return
    fast = columns.fast
    pick = columns.pick
    true = TRUE
    for lineno, raw in lines:
        if only is not None and not (lineno < len(only) and only[lineno]):
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield RowError(name, lineno, None, encoding_reason(exc))
            continue
        match = fast(text)
        if match is not None:
            item, dregion, dproject, project, sregion, row_name, description, accel = match.group(
                *pick
            )
            project = project or default_project
            if project is not None and sregion != dregion:
                yield make(  # positional: keywords cost a microsecond here
                    item,
                    project,
                    dregion,
                    dproject,
                    sregion or None,
                    row_name.strip() or None if row_name else None,
                    description.strip() or None if description else None,
                    accel.lower() in true if accel else None,
                    lineno,
                )
                continue
        if not text.strip():
            continue
        cells = _read_record(text, lines)
        if isinstance(cells, str):
            yield RowError(name, lineno, None, cells)
            continue
        row = columns.row(name, lineno, cells, default_project)
        yield row if isinstance(row, RowError) else remake(row, make)


def _read_header(name: str, lines: Iterator[tuple[int, bytes]]) -> _Columns | None:
    """The columns of the first non-blank record (``None`` for an empty file)."""
    for lineno, raw in lines:
        try:
            text = (raw.removeprefix(BOM) if lineno == 1 else raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ManifestError(name, lineno, None, encoding_reason(exc)) from None
        if text.strip():
            cells = _read_record(text, lines)
            if isinstance(cells, str):
                raise ManifestError(name, lineno, None, f"header line: {cells}")
            return _Columns.from_header(name, lineno, cells)
    return None


def _read_record(text: str, more: Iterator[tuple[int, bytes]]) -> list[str] | str:
    """Split one CSV record into cells, pulling further lines while a quoted value is open.

    Returns the cells, or the reason the record cannot be read.
    """
    for _ in range(_MAX_RECORD_LINES):
        try:
            return next(csv.reader((text,), strict=True))
        except csv.Error as exc:
            if text.count('"') % 2 == 0:  # not an open quote: a real syntax error
                return f"CSV syntax: {exc}"
        nxt = next(more, None)
        if nxt is None:
            return "CSV syntax: a quoted value is not closed before the end of the file"
        try:
            text += nxt[1].decode("utf-8")
        except UnicodeDecodeError as exc:
            return f"line {nxt[0]}: {encoding_reason(exc)}"
    return f"CSV syntax: a quoted value is not closed within {_MAX_RECORD_LINES} lines"


@dataclass(frozen=True, slots=True)
class _Columns:
    """Where each known field sits in a CSV row (-1: no such column), and the fast path."""

    width: int
    item: int
    dregion: int
    dproject: int
    project: int
    sregion: int
    name: int
    description: int
    acceleration: int
    fast: Callable[[str], re.Match[str] | None]
    pick: tuple[int, ...]  # group numbers of the fast match, in _PICK_ORDER

    @classmethod
    def from_header(cls, path: str, line: int, cells: list[str]) -> _Columns:
        names = [c.strip().lower() for c in cells]
        for column in names:
            if column in CBR_ONLY:
                raise ManifestError(path, line, column, CBR_MANIFEST)
            if column not in KNOWN:
                known = ", ".join(FIELDS)
                raise ManifestError(
                    path, line, column or "(empty)", f"unknown column; the columns are: {known}"
                )
            if names.count(column) > 1:
                raise ManifestError(path, line, column, "column appears more than once")
        for column in REQUIRED_FIELDS:
            if column not in names:
                raise ManifestError(path, line, column, "required column is missing")
        pos = {c: i for i, c in enumerate(names)}
        # The last group always matches nothing: absent columns read it as "".
        fast = re.compile(",".join(_FAST_CELL[c] for c in names) + r"()\r?\n?").fullmatch
        empty = len(names) + 1
        return cls(
            width=len(names),
            item=pos["checkpoint_item_id"],
            dregion=pos["destination_region"],
            dproject=pos["destination_project_id"],
            project=pos.get("project_id", -1),
            sregion=pos.get("source_region", -1),
            name=pos.get("name", -1),
            description=pos.get("description", -1),
            acceleration=pos.get("enable_acceleration", -1),
            fast=fast,
            pick=tuple(pos[c] + 1 if c in pos else empty for c in _PICK_ORDER),
        )

    def row(
        self, path: str, line: int, cells: list[str], default_project: str | None
    ) -> ReplicationTask | RowError:
        """The careful path: any row, with a precise reason when it is wrong."""
        if len(cells) != self.width:
            return RowError(
                path,
                line,
                None,
                f"row has {len(cells)} cells but the header has {self.width}: "
                "check for a missing or extra comma, or quote the value",
                *self._raw_ids(cells),
            )

        def cell(i: int) -> str | None:
            return (cells[i].strip() or None) if i >= 0 else None

        values = Values(
            cells[self.item].strip(),
            cells[self.dregion].strip(),
            cells[self.dproject].strip(),
            cell(self.project),
            cell(self.sregion),
            cell(self.name),
            cell(self.description),
            parse_bool_text(cell(self.acceleration)),
        )
        return validate(path, line, values, default_project)

    def _raw_ids(self, cells: list[str]) -> tuple[str | None, str | None, str | None]:
        def get(i: int) -> str | None:
            return cells[i].strip() or None if 0 <= i < len(cells) else None

        return get(self.item), get(self.dregion), get(self.project)
