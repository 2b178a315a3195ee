"""Read a manifest (CSV with a header, or JSON Lines) into replication tasks, streamed.

Both formats carry the same fields:

============================  ========  ==================================================
field                         required  rule
============================  ========  ==================================================
``checkpoint_item_id``        yes       a UUID (8-4-4-4-12 hex)
``destination_region``        yes       a region name such as ``cn-north-1``
``destination_project_id``    yes       32 hex characters (the UUID form is accepted too)
``project_id``                no        the *source* project; defaults to ``--project-id``
``source_region``             no        per-row source region override
``name``, ``description``     no        at most 255 characters, no control characters
``enable_acceleration``       no        true/false, 1/0, yes/no (or a JSON bool)
============================  ========  ==================================================

The format comes from the extension (``.csv``; ``.jsonl``, ``.ndjson``, ``.json``), else from
the first non-blank byte (``{`` means JSON Lines). Rows are decoded and checked one physical
line at a time, so a million-row file is never held in memory and one badly encoded line
costs that row only. Line numbers are physical lines, 1-based, the CSV header being line 1;
a CSV record whose quoted value spans lines has the number of its first line.

A bad *row* becomes a :class:`RowError` in the stream (the run goes on without it); a bad
*file* (missing, unreadable, unknown or missing CSV column) raises
:class:`~orchestrator.errors.ManifestError` because every row would be wrong the same way.

Values are stripped of surrounding blanks, and empty optional values count as absent. Ids
are hexadecimal and case-insensitive: they are lower-cased so that ``ABC...`` and
``abc...`` are one pair when deduplicating.

Speed: each row first meets a *fast path* (one regular expression over a plain CSV line,
or a few checks over a decoded JSON object) that only accepts rows which are certainly
valid; anything else takes the careful path that produces the precise :class:`RowError`.
Both paths build identical tasks.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from itertools import islice
from typing import Any, BinaryIO, Final, Literal, NamedTuple, TypeVar

import orjson

from orchestrator.errors import ConfigError, ManifestChangedError, ManifestError
from orchestrator.models import ReplicationTask

__all__ = [
    "FIELDS",
    "PIN_BLOCK_LINES",
    "REQUIRED_FIELDS",
    "ManifestFormat",
    "ManifestPin",
    "RowError",
    "RowFields",
    "check_row",
    "detect_format",
    "is_region_name",
    "iter_manifest",
    "iter_manifest_fields",
]

REQUIRED_FIELDS: Final = ("checkpoint_item_id", "destination_region", "destination_project_id")
OPTIONAL_FIELDS: Final = (
    "project_id",
    "source_region",
    "name",
    "description",
    "enable_acceleration",
)
FIELDS: Final = REQUIRED_FIELDS + OPTIONAL_FIELDS
_KNOWN: Final = frozenset(FIELDS)
#: Columns only a CBR manifest has: a CSBS run refuses the whole file, naming the flag.
_CBR_ONLY: Final = frozenset({"backup_id", "destination_vault_id"})
_CBR_MANIFEST: Final = (
    "this is a CBR manifest (backup_id, destination_vault_id): run with --service cbr; "
    f"a CSBS manifest has the columns {', '.join(FIELDS)}"
)

ManifestFormat = Literal["csv", "jsonl"]

_EXTENSIONS: Final[dict[str, ManifestFormat]] = {
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}
_BOM: Final = b"\xef\xbb\xbf"
_SNIFF_BYTES: Final = 65536
_MAX_TEXT: Final = 255
#: A quoted CSV value may span lines, but not without end: past this, report the record.
_MAX_RECORD_LINES: Final = 100

_UUID: Final = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_PROJECT: Final = rf"[0-9a-fA-F]{{32}}|{_UUID}"
_REGION: Final = r"[a-z]{2,}(?:-[a-z0-9]+)+"
_is_uuid = re.compile(_UUID).fullmatch
_is_project_id = re.compile(_PROJECT).fullmatch
_is_region = re.compile(_REGION).fullmatch
_has_control = re.compile(r"[\x00-\x1f\x7f]").search

# The fast paths accept lower-case ids only, so that they need no case folding.
_UUID_LC: Final = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_PROJECT_LC: Final = rf"[0-9a-f]{{32}}|{_UUID_LC}"
_fast_ids = re.compile(rf"{_UUID_LC},{_REGION},(?:{_PROJECT_LC})").fullmatch
_fast_ids_project = re.compile(
    rf"{_UUID_LC},{_REGION},(?:{_PROJECT_LC}),(?:{_PROJECT_LC})"
).fullmatch

#: One capturing group per column for the CSV fast path: unquoted, already-valid values only.
_FAST_CELL: Final = {
    "checkpoint_item_id": f"({_UUID_LC})",
    "destination_region": f"({_REGION})",
    "destination_project_id": f"({_PROJECT_LC})",
    "project_id": f"({_PROJECT_LC})?",
    "source_region": f"({_REGION})?",
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

_TRUE: Final = frozenset({"true", "1", "yes"})
_FALSE: Final = frozenset({"false", "0", "no"})

_NO_PROJECT: Final = (
    "no source project: set --project-id or HUAWEICLOUD_SDK_PROJECT_ID, or add a project_id column"
)
_A_PROJECT: Final = "a project id (32 hex digits, or a UUID)"
_A_REGION: Final = "a region name like cn-north-1 (lower case)"


@dataclass(frozen=True, slots=True)
class RowError:
    """One manifest row that cannot become a task; the reason says what to fix.

    The ids are the raw values of the row when they could be read (for the ledger's
    ``rejected`` line and the report), ``None`` otherwise.
    """

    path: str
    line: int
    field: str | None
    reason: str
    checkpoint_item_id: str | None = None
    destination_region: str | None = None
    project_id: str | None = None
    destination_project_id: str | None = None

    def __str__(self) -> str:
        what = f"field {self.field!r}: " if self.field else ""
        return f"{self.path}:{self.line}: {what}{self.reason}"


#: Lines per block of a :class:`ManifestPin`: pass two checks each block against pass one's
#: digest before any of its rows is used (a block is held in memory meanwhile).
PIN_BLOCK_LINES = 1024


class ManifestPin:
    """The manifest's bytes as pass one read them: a SHA-256 of the whole file (recorded in
    ``run_started``) and one digest per block of lines.

    The first read through :meth:`lines` records; every later read verifies each block
    before handing out any of its lines, and that nothing follows the last one. A run thus
    works from the file as it was when planned, whatever happens to it meanwhile: a block
    that differs raises :class:`ManifestChangedError` before a row of it is used, so nothing
    pass one did not validate is ever sent (S3 Batch Operations pins its manifest by ETag).
    """

    __slots__ = ("_blocks", "_whole", "block_lines", "path", "sealed", "size")

    def __init__(self, path: str, block_lines: int | None = None) -> None:
        self.path = path
        self.block_lines = block_lines or PIN_BLOCK_LINES
        self._blocks: list[bytes] = []
        self._whole = hashlib.sha256()
        self.size = 0
        self.sealed = False  # a whole read was recorded

    @property
    def sha256(self) -> str:
        """Hex digest of the bytes recorded (the whole file once :attr:`sealed`)."""
        return self._whole.hexdigest()

    def lines(self, f: BinaryIO) -> Iterator[bytes]:
        """The file's lines: recorded on the first whole read, verified on every other."""
        return self._verify(f) if self.sealed else self._record(f)

    def _record(self, f: BinaryIO) -> Iterator[bytes]:
        self._blocks, self._whole, self.size = [], hashlib.sha256(), 0
        while block := list(islice(f, self.block_lines)):
            data = b"".join(block)
            self._whole.update(data)
            self.size += len(data)
            self._blocks.append(hashlib.sha256(data).digest())
            yield from block
        self.sealed = True

    def _verify(self, f: BinaryIO) -> Iterator[bytes]:
        for number, expected in enumerate(self._blocks):
            block = list(islice(f, self.block_lines))
            if hashlib.sha256(b"".join(block)).digest() != expected:
                raise self._changed(number * self.block_lines + 1)
            yield from block
        if f.read(1):
            raise self._changed(len(self._blocks) * self.block_lines + 1)

    def _changed(self, line: int) -> ManifestChangedError:
        return ManifestChangedError(
            self.path,
            line,
            None,
            f"the manifest changed during the run (planned: {self.size} bytes, sha256 "
            f"{self.sha256[:16]}...); nothing read after the change was sent",
        )


def detect_format(path: str | os.PathLike[str]) -> ManifestFormat:
    """The manifest's format, from its extension or else its first non-blank byte."""
    name = os.fspath(path)
    ext = os.path.splitext(name)[1].lower()
    if ext in _EXTENSIONS:
        return _EXTENSIONS[ext]
    with _open(name) as f:
        head = _read(f, name, _SNIFF_BYTES)
    return "jsonl" if head.removeprefix(_BOM).lstrip()[:1] == b"{" else "csv"


def iter_manifest(
    path: str | os.PathLike[str],
    *,
    default_project_id: str | None,
    only_lines: bytes | bytearray | None = None,
    pin: ManifestPin | None = None,
) -> Iterator[ReplicationTask | RowError]:
    """Stream the manifest's rows as tasks or row errors, in file order.

    A missing or unreadable file raises :class:`ManifestError` here, at the call; CSV header
    problems raise it at the first ``next``. A malformed ``default_project_id`` raises
    :class:`ConfigError` (it is a flag or environment problem, not a row problem).

    ``only_lines`` (for the plan's second pass) selects rows by their first line number:
    a row is read only when ``only_lines[line]`` is non-zero; the others are skipped before
    they are even decoded. ``pin`` records the bytes read, or verifies them (see
    :class:`ManifestPin`).
    """
    return _reader(path, default_project_id, only_lines, ReplicationTask, pin)


#: A valid row as a plain tuple, in :class:`ReplicationTask`'s field order: checkpoint item,
#: source project, destination region, destination project, source region, name,
#: description, enable_acceleration, line.
RowFields = tuple[str, str, str, str, str | None, str | None, str | None, bool | None, int]


def iter_manifest_fields(
    path: str | os.PathLike[str],
    *,
    default_project_id: str | None,
    pin: ManifestPin | None = None,
) -> Iterator[RowFields | RowError]:
    """:func:`iter_manifest` for a reader that only looks: valid rows come as
    :data:`RowFields` tuples, which cost a fraction of a frozen task to build."""
    return _reader(path, default_project_id, None, _row_fields, pin)


def _row_fields(*fields: Any) -> RowFields:
    return fields


_T = TypeVar("_T")
#: Builds a row's result from its values, positionally in ReplicationTask's field order.
_Make = Callable[[str, str, str, str, str | None, str | None, str | None, bool | None, int], _T]


def _reader(
    path: str | os.PathLike[str],
    default_project_id: str | None,
    only_lines: bytes | bytearray | None,
    make: _Make[_T],
    pin: ManifestPin | None = None,
) -> Iterator[_T | RowError]:
    name = os.fspath(path)
    default = _check_default_project(default_project_id)
    fmt = detect_format(name)
    with _open(name) as f:
        first = _read(f, name, _SNIFF_BYTES)
    if fmt == "jsonl" and first.removeprefix(_BOM).lstrip()[:1] == b"[":
        raise ManifestError(
            name, None, None, "a JSON array is not supported: write one JSON object per line"
        )
    if fmt == "csv":
        return _iter_csv(name, default, only_lines, make, pin)
    return _iter_jsonl(name, default, only_lines, make, pin)


def _remake(task: ReplicationTask, make: _Make[_T]) -> _T:
    """A task from the careful path in the caller's shape."""
    if make is ReplicationTask:
        return task  # type: ignore[return-value]
    return make(
        task.checkpoint_item_id,
        task.project_id,
        task.destination_region,
        task.destination_project_id,
        task.source_region,
        task.name,
        task.description,
        task.enable_acceleration,
        task.line,
    )


def _check_default_project(value: str | None) -> str | None:
    if not value:
        return None
    if not _is_project_id(value):
        raise ConfigError(
            f"default source project id {value!r} (--project-id or HUAWEICLOUD_SDK_PROJECT_ID): "
            "must be 32 hex characters"
        )
    return value.lower()


def _open(name: str) -> BinaryIO:
    try:
        return open(name, "rb")
    except OSError as exc:
        raise ManifestError(name, None, None, f"cannot open: {exc.strerror or exc}") from exc


def _read(f: BinaryIO, name: str, size: int) -> bytes:
    try:
        return f.read(size)
    except OSError as exc:
        raise ManifestError(name, None, None, f"cannot read: {exc.strerror or exc}") from exc


def is_region_name(value: str) -> bool:
    """Whether ``value`` has the shape of a region name (``cn-north-1``)."""
    return _is_region(value) is not None


def _encoding_reason(exc: UnicodeDecodeError) -> str:
    return f"not valid UTF-8 (byte {exc.object[exc.start]:#04x} at column {exc.start + 1})"


# --- CSV -------------------------------------------------------------------------------------


def _iter_csv(
    name: str,
    default_project: str | None,
    only: bytes | bytearray | None,
    make: _Make[_T],
    pin: ManifestPin | None,
) -> Iterator[_T | RowError]:
    with _open(name) as f:
        lines = enumerate(f if pin is None else pin.lines(f), 1)
        try:
            columns = _read_header(name, lines)
            if columns is not None:
                yield from _csv_rows(name, lines, columns, default_project, only=only, make=make)
        except OSError as exc:
            raise ManifestError(name, None, None, f"cannot read: {exc.strerror or exc}") from exc


def _read_header(name: str, lines: Iterator[tuple[int, bytes]]) -> _Columns | None:
    """The columns of the first non-blank record (``None`` for an empty file)."""
    for lineno, raw in lines:
        try:
            text = (raw.removeprefix(_BOM) if lineno == 1 else raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ManifestError(name, lineno, None, _encoding_reason(exc)) from None
        if text.strip():
            cells = _read_record(text, lines)
            if isinstance(cells, str):
                raise ManifestError(name, lineno, None, f"header line: {cells}")
            return _Columns.from_header(name, lineno, cells)
    return None


def _csv_rows(
    name: str,
    lines: Iterator[tuple[int, bytes]],
    columns: _Columns,
    default_project: str | None,
    *,
    only: bytes | bytearray | None,
    make: _Make[_T],
) -> Iterator[_T | RowError]:
    """The rows after the header. The fast path is inlined: it runs once per row."""
    fast = columns.fast
    pick = columns.pick
    true = _TRUE
    for lineno, raw in lines:
        if only is not None and not (lineno < len(only) and only[lineno]):
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield RowError(name, lineno, None, _encoding_reason(exc))
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
        yield row if isinstance(row, RowError) else _remake(row, make)


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
            return f"line {nxt[0]}: {_encoding_reason(exc)}"
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
            if column in _CBR_ONLY:
                raise ManifestError(path, line, column, _CBR_MANIFEST)
            if column not in _KNOWN:
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

        values = _Values(
            cells[self.item].strip(),
            cells[self.dregion].strip(),
            cells[self.dproject].strip(),
            cell(self.project),
            cell(self.sregion),
            cell(self.name),
            cell(self.description),
            _parse_bool_text(cell(self.acceleration)),
        )
        return _validate(path, line, values, default_project)

    def _raw_ids(self, cells: list[str]) -> tuple[str | None, str | None, str | None]:
        def get(i: int) -> str | None:
            return cells[i].strip() or None if 0 <= i < len(cells) else None

        return get(self.item), get(self.dregion), get(self.project)


# --- JSON Lines ------------------------------------------------------------------------------


def _iter_jsonl(
    name: str,
    default_project: str | None,
    only: bytes | bytearray | None,
    make: _Make[_T],
    pin: ManifestPin | None,
) -> Iterator[_T | RowError]:
    with _open(name) as f:
        lines = enumerate(f if pin is None else pin.lines(f), 1)
        try:
            yield from _jsonl_rows(name, lines, default_project, only=only, make=make)
        except OSError as exc:
            raise ManifestError(name, None, None, f"cannot read: {exc.strerror or exc}") from exc


def _jsonl_rows(
    name: str,
    lines: Iterator[tuple[int, bytes]],
    default_project: str | None,
    *,
    only: bytes | bytearray | None,
    make: _Make[_T],
) -> Iterator[_T | RowError]:
    loads = orjson.loads
    for lineno, raw in lines:
        if only is not None and not (lineno < len(only) and only[lineno]):
            continue
        data = raw.removeprefix(_BOM) if lineno == 1 else raw
        try:
            obj = loads(data)
        except orjson.JSONDecodeError as exc:
            if data.strip():
                yield RowError(name, lineno, None, _json_reason(data, exc))
            continue
        if type(obj) is not dict:
            yield RowError(name, lineno, None, "not a JSON object: write one {...} per line")
            continue
        fast = _fast_json(obj, lineno, default_project, make)
        if fast is not None:
            yield fast
            continue
        row = _json_row(name, lineno, obj, default_project)
        yield row if isinstance(row, RowError) else _remake(row, make)


def _json_reason(data: bytes, exc: orjson.JSONDecodeError) -> str:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as bad:
        return _encoding_reason(bad)
    return f"invalid JSON: {exc}"


def _fast_json(
    obj: dict[str, Any], line: int, default_project: str | None, make: _Make[_T]
) -> _T | None:
    """The task for an object that is certainly valid, or ``None`` to take the careful path.

    The usual object has the three required keys and perhaps ``project_id``: those are
    checked with one expression, and the optional keys only looked up when there are more.
    """
    get = obj.get
    item = get("checkpoint_item_id")
    dregion = get("destination_region")
    dproject = get("destination_project_id")
    project = get("project_id")
    if type(item) is not str or type(dregion) is not str or type(dproject) is not str:
        return None
    if type(project) is str:
        if not _fast_ids_project(f"{item},{dregion},{dproject},{project}"):
            return None
        extra = len(obj) - 4
    elif project is None and default_project is not None:
        if not _fast_ids(f"{item},{dregion},{dproject}"):
            return None
        project = default_project
        extra = len(obj) - 3 - ("project_id" in obj)
    else:
        return None
    if not extra:
        return make(item, project, dregion, dproject, None, None, None, None, line)
    return _fast_json_optional(obj, (item, project, dregion, dproject), line, make)


def _fast_json_optional(
    obj: dict[str, Any], ids: tuple[str, str, str, str], line: int, make: _Make[_T]
) -> _T | None:
    """The rest of the fast path, for an object with optional keys."""
    if not obj.keys() <= _KNOWN:
        return None
    get = obj.get
    sregion = get("source_region")
    accel = get("enable_acceleration")
    name = get("name")
    description = get("description")
    if not (
        (sregion is None or (type(sregion) is str and _is_region(sregion)))
        and sregion != ids[2]
        and (accel is None or type(accel) is bool)
        and _fast_text(name)
        and _fast_text(description)
    ):
        return None
    return make(
        *ids,
        sregion,
        name.strip() or None if name else None,
        description.strip() or None if description else None,
        accel,
        line,
    )


def _fast_text(value: object) -> bool:
    return value is None or (
        type(value) is str and len(value) <= _MAX_TEXT and not _has_control(value)
    )


def _json_row(
    path: str, line: int, obj: dict[str, Any], default_project: str | None
) -> ReplicationTask | RowError:
    """The careful path for one JSON object."""
    ids = (
        _raw(obj.get("checkpoint_item_id")),
        _raw(obj.get("destination_region")),
        _raw(obj.get("project_id")),
        _raw(obj.get("destination_project_id")),
    )
    unknown = obj.keys() - _KNOWN
    if unknown & _CBR_ONLY:
        raise ManifestError(path, line, sorted(unknown & _CBR_ONLY)[0], _CBR_MANIFEST)
    if unknown:
        key = sorted(unknown)[0]
        return RowError(path, line, key, f"unknown key; the keys are: {', '.join(FIELDS)}", *ids)
    for key, value in obj.items():
        if key != "enable_acceleration" and value is not None and type(value) is not str:
            return RowError(path, line, key, "must be a string", *ids)
    accel = obj.get("enable_acceleration")
    if type(accel) is str:
        accel = _parse_bool_text(accel.strip() or None)

    def text(key: str) -> str | None:
        value: str | None = obj.get(key)
        return (value.strip() or None) if value is not None else None

    values = _Values(
        text("checkpoint_item_id") or "",
        text("destination_region") or "",
        text("destination_project_id") or "",
        text("project_id"),
        text("source_region"),
        text("name"),
        text("description"),
        accel,
    )
    return _validate(path, line, values, default_project)


def _raw(value: object) -> str | None:
    return value if type(value) is str and value else None


# --- The careful path, shared by both formats ------------------------------------------------


class _BadBool:
    """Marks an ``enable_acceleration`` value that is not a boolean (kept for the message)."""

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value


def _parse_bool_text(value: str | None) -> bool | _BadBool | None:
    if value is None:
        return None
    folded = value.lower()
    if folded in _TRUE:
        return True
    if folded in _FALSE:
        return False
    return _BadBool(value)


def check_row(
    path: str, line: int, values: Mapping[str, object], default_project_id: str | None
) -> ReplicationTask | RowError:
    """The careful path over one row given by field name (values are strings, or a bool for
    ``enable_acceleration``): for readers of other layouts (CBR's manifest) that share the
    rules of every CSBS field."""

    def text(key: str) -> str | None:
        value = values.get(key)
        return (value.strip() or None) if isinstance(value, str) else None

    accel = values.get("enable_acceleration")
    if isinstance(accel, str):
        accel = _parse_bool_text(accel.strip() or None)
    row = _Values(
        text("checkpoint_item_id") or "",
        text("destination_region") or "",
        text("destination_project_id") or "",
        text("project_id"),
        text("source_region"),
        text("name"),
        text("description"),
        accel,
    )
    return _validate(path, line, row, default_project_id)


class _Values(NamedTuple):
    """One row's values, stripped; ``""`` or ``None`` when absent."""

    item: str
    dregion: str
    dproject: str
    project: str | None
    sregion: str | None
    name: str | None
    description: str | None
    accel: object


def _validate(
    path: str, line: int, v: _Values, default_project: str | None
) -> ReplicationTask | RowError:
    problem = _id_problem(v) or _text_problem(v)
    source = v.project.lower() if v.project is not None else default_project
    if problem is None:
        if source is not None:
            return ReplicationTask(
                checkpoint_item_id=v.item.lower(),
                project_id=source,
                destination_region=v.dregion,
                destination_project_id=v.dproject.lower(),
                source_region=v.sregion,
                name=v.name,
                description=v.description,
                enable_acceleration=v.accel if isinstance(v.accel, bool) else None,
                line=line,
            )
        problem = ("project_id", _NO_PROJECT)
    field, reason = problem
    return RowError(
        path,
        line,
        field,
        reason,
        v.item or None,
        v.dregion or None,
        v.project,
        v.dproject or None,
    )


def _id_problem(v: _Values) -> tuple[str, str] | None:
    """The first missing or malformed id, as (field, what to fix)."""
    for field, value in zip(REQUIRED_FIELDS, (v.item, v.dregion, v.dproject), strict=True):
        if not value:
            return field, "required value is missing or empty"
    checks: tuple[tuple[str, str | None, Callable[[str], object], str], ...] = (
        ("checkpoint_item_id", v.item, _is_uuid, "a UUID (8-4-4-4-12 hex digits)"),
        ("destination_region", v.dregion, _is_region, _A_REGION),
        ("destination_project_id", v.dproject, _is_project_id, _A_PROJECT),
        ("project_id", v.project, _is_project_id, _A_PROJECT),
        ("source_region", v.sregion, _is_region, _A_REGION),
    )
    for name, given, valid, what in checks:
        if given is not None and not valid(given):
            return name, f"{given!r} is not {what}"
    if v.sregion == v.dregion:
        return "destination_region", "is the same as source_region: nothing to replicate"
    return None


def _text_problem(v: _Values) -> tuple[str, str] | None:
    """The first bad optional value (name, description, enable_acceleration)."""
    for field, text in (("name", v.name), ("description", v.description)):
        if text is not None:
            if len(text) > _MAX_TEXT:
                return field, f"is {len(text)} characters long; at most {_MAX_TEXT} are allowed"
            if _has_control(text):
                return field, "contains a control character (tab, newline, ...)"
    accel = v.accel
    if accel is not None and type(accel) is not bool:
        shown = accel.value if isinstance(accel, _BadBool) else accel
        return "enable_acceleration", f"{shown!r} is not a boolean (true/false, yes/no, 1/0)"
    return None
