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

This module is the manifest's public face: the rest of the tool and the tests import the
reader's entry points, its fields, :class:`RowError` and the pin from here; the engine's
own modules import them from where they are defined. The modules: this one opens the
file, tells its format and hands its lines to :mod:`~orchestrator.engine.manifest_csv` or
:mod:`~orchestrator.engine.manifest_jsonl`; :mod:`~orchestrator.engine.manifest_rows` holds
the fields, :class:`RowError` and the careful path both formats share;
:mod:`~orchestrator.engine.manifest_pin` the pin of a run's manifest.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any, BinaryIO, Final, Literal, TypeVar

from orchestrator.engine.manifest_csv import csv_rows
from orchestrator.engine.manifest_jsonl import jsonl_rows
from orchestrator.engine.manifest_pin import PIN_BLOCK_LINES, ManifestPin
from orchestrator.engine.manifest_rows import (
    BOM,
    FIELDS,
    REQUIRED_FIELDS,
    Make,
    RowError,
    RowFields,
    check_row,
    is_project_id,
    is_region_name,
)
from orchestrator.errors import ConfigError, ManifestError
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

ManifestFormat = Literal["csv", "jsonl"]

_EXTENSIONS: Final[dict[str, ManifestFormat]] = {
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}
_SNIFF_BYTES: Final = 65536


def detect_format(path: str | os.PathLike[str]) -> ManifestFormat:
    """The manifest's format, from its extension or else its first non-blank byte."""
    name = os.fspath(path)
    ext = os.path.splitext(name)[1].lower()
    if ext in _EXTENSIONS:
        return _EXTENSIONS[ext]
    with _open(name) as f:
        head = _read(f, name, _SNIFF_BYTES)
    return "jsonl" if head.removeprefix(BOM).lstrip()[:1] == b"{" else "csv"


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


def _reader(
    path: str | os.PathLike[str],
    default_project_id: str | None,
    only_lines: bytes | bytearray | None,
    make: Make[_T],
    pin: ManifestPin | None = None,
) -> Iterator[_T | RowError]:
    name = os.fspath(path)
    default = _check_default_project(default_project_id)
    fmt = detect_format(name)
    with _open(name) as f:
        first = _read(f, name, _SNIFF_BYTES)
    if fmt == "jsonl" and first.removeprefix(BOM).lstrip()[:1] == b"[":
        raise ManifestError(
            name, None, None, "a JSON array is not supported: write one JSON object per line"
        )
    return _rows(name, fmt, default, only=only_lines, make=make, pin=pin)


def _rows(
    name: str,
    fmt: ManifestFormat,
    default_project: str | None,
    *,
    only: bytes | bytearray | None,
    make: Make[_T],
    pin: ManifestPin | None,
) -> Iterator[_T | RowError]:
    """The file opened at the first ``next`` and its numbered lines read in its format."""
    rows = csv_rows if fmt == "csv" else jsonl_rows
    with _open(name) as f:
        lines = enumerate(f if pin is None else pin.lines(f), 1)
        try:
            yield from rows(name, lines, default_project, only=only, make=make)
        except OSError as exc:
            raise ManifestError(name, None, None, f"cannot read: {exc.strerror or exc}") from exc


def _check_default_project(value: str | None) -> str | None:
    if not value:
        return None
    if not is_project_id(value):
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
