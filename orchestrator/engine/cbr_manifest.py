"""Read a CBR manifest (CSV with a header, or JSON Lines) into replication tasks, streamed.

============================  ========  ==================================================
field                         required  rule
============================  ========  ==================================================
``backup_id``                 yes       a UUID: the source backup (in a source vault)
``destination_region``        yes       a region name such as ``cn-north-4``
``destination_project_id``    yes       32 hex characters (the UUID form is accepted too)
``destination_vault_id``      yes       a UUID: the vault of the destination region
``project_id``                no        the *source* project; defaults to ``--project-id``
``source_region``             no        per-row source region override
``name``, ``description``     no        at most 255 characters, no control characters
``enable_acceleration``       no        true/false, 1/0, yes/no (or a JSON bool)
============================  ========  ==================================================

Every field shared with CSBS follows CSBS's rules (:func:`orchestrator.engine.manifest.check_row`):
the same messages, the same lower-casing. A pair is (source project, backup, destination
region), as for CSBS; its destination is (project, vault): two rows of one pair that name
different vaults are a conflict, like two different destination projects.

A CSBS manifest given to a CBR run (a ``checkpoint_item_id`` column or key) is refused as a
whole, naming the expected columns, before anything is sent.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterator, Mapping
from typing import Final

import orjson

from orchestrator.engine.manifest import detect_format
from orchestrator.engine.manifest_pin import ManifestPin
from orchestrator.engine.manifest_rows import RowError, RowFields, check_row
from orchestrator.errors import ConfigError, ManifestError
from orchestrator.models import ReplicationTask

__all__ = ["CBR_FIELDS", "CBR_REQUIRED", "iter_cbr_fields", "iter_cbr_manifest"]

CBR_REQUIRED: Final = (
    "backup_id",
    "destination_region",
    "destination_project_id",
    "destination_vault_id",
)
CBR_OPTIONAL: Final = (
    "project_id",
    "source_region",
    "name",
    "description",
    "enable_acceleration",
)
CBR_FIELDS: Final = CBR_REQUIRED + CBR_OPTIONAL
_KNOWN: Final = frozenset(CBR_FIELDS)
_UUID: Final = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
_PROJECT: Final = re.compile(r"[0-9a-fA-F]{32}|" + _UUID.pattern)
_CSBS_MANIFEST: Final = (
    "this is a CSBS manifest (checkpoint_item_id): run with --service csbs, or give a CBR "
    f"manifest with the columns {', '.join(CBR_REQUIRED)} (optional: {', '.join(CBR_OPTIONAL)})"
)
_VAULT_WHAT: Final = "a vault id: a UUID (8-4-4-4-12 hex digits)"


def iter_cbr_manifest(
    path: str | os.PathLike[str],
    *,
    default_project_id: str | None,
    only_lines: bytes | bytearray | None = None,
    pin: ManifestPin | None = None,
) -> Iterator[ReplicationTask | RowError]:
    """Stream the manifest's rows as CBR tasks or row errors, in file order.

    A missing, unreadable or wrongly shaped file (a CSBS manifest, a missing column) raises
    :class:`ManifestError`; a bad row becomes a :class:`RowError`. ``only_lines``: as for
    :func:`orchestrator.engine.manifest.iter_manifest`, rows whose line is not marked are skipped.
    ``pin`` records the bytes read, or verifies them block by block before any row of a
    block is used (:class:`~orchestrator.errors.ManifestChangedError`), as for CSBS.
    """
    name = os.fspath(path)
    default = _checked_default(default_project_id)
    fmt = detect_format(name)
    rows = _jsonl_rows(name, pin) if fmt == "jsonl" else _csv_rows(name, pin)
    for line, row in rows:
        if only_lines is not None and (line >= len(only_lines) or not only_lines[line]):
            continue
        yield row if isinstance(row, RowError) else _task(name, line, row, default)


def iter_cbr_fields(
    path: str | os.PathLike[str],
    *,
    default_project_id: str | None,
    pin: ManifestPin | None = None,
) -> Iterator[RowFields | RowError]:
    """:func:`iter_cbr_manifest` as the plan's first pass reads it: the destination slot
    holds ``project/vault`` so that two rows of a pair naming different vaults conflict."""
    for row in iter_cbr_manifest(path, default_project_id=default_project_id, pin=pin):
        if isinstance(row, RowError):
            yield row
            continue
        yield (
            row.checkpoint_item_id,
            row.project_id,
            row.destination_region,
            f"{row.destination_project_id}/{row.destination_vault_id}",
            row.source_region,
            row.name,
            row.description,
            row.enable_acceleration,
            row.line,
        )


def _checked_default(value: str | None) -> str | None:
    if value is None:
        return None
    if not _PROJECT.fullmatch(value):
        raise ConfigError(f"--project-id {value!r} is not a project id (32 hex digits, or a UUID)")
    return value.lower()


def _task(
    path: str, line: int, row: Mapping[str, object], default: str | None
) -> ReplicationTask | RowError:
    backup = row.get("backup_id")
    vault = row.get("destination_vault_id")
    shared = {k: v for k, v in row.items() if k not in ("backup_id", "destination_vault_id")}
    shared["checkpoint_item_id"] = backup
    checked = check_row(path, line, shared, default)
    if isinstance(checked, RowError):
        field = "backup_id" if checked.field == "checkpoint_item_id" else checked.field
        reason = checked.reason.replace("checkpoint item", "backup")
        return RowError(
            path,
            line,
            field,
            reason,
            checked.checkpoint_item_id,
            checked.destination_region,
            checked.project_id,
            checked.destination_project_id,
        )
    vault_text = vault.strip() if isinstance(vault, str) else ""
    if not vault_text or not _UUID.fullmatch(vault_text):
        reason = (
            "required value is missing or empty"
            if not vault_text
            else f"{vault_text!r} is not {_VAULT_WHAT}"
        )
        return RowError(
            path,
            line,
            "destination_vault_id",
            reason,
            checked.checkpoint_item_id,
            checked.destination_region,
            checked.project_id,
            checked.destination_project_id,
        )
    return ReplicationTask(
        checkpoint_item_id=checked.checkpoint_item_id,
        project_id=checked.project_id,
        destination_region=checked.destination_region,
        destination_project_id=checked.destination_project_id,
        source_region=checked.source_region,
        name=checked.name,
        description=checked.description,
        enable_acceleration=checked.enable_acceleration,
        line=line,
        destination_vault_id=vault_text.lower(),
    )


# --- CSV ---------------------------------------------------------------------------------


def _text_lines(path: str, pin: ManifestPin | None) -> Iterator[str]:
    """The file's lines as text (line ends kept), streamed; through ``pin`` when given, so
    a later pass sees the first pass's bytes or stops."""
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below, the generator may be left early
    except FileNotFoundError:
        raise ManifestError(path, None, None, "manifest not found") from None
    except OSError as exc:
        raise ManifestError(path, None, None, f"cannot read: {exc.strerror}") from None
    with f:
        try:
            for line, raw in enumerate(f if pin is None else pin.lines(f), 1):
                try:
                    yield raw.decode("utf-8-sig" if line == 1 else "utf-8")
                except UnicodeDecodeError:
                    raise ManifestError(path, line, None, "not UTF-8 text") from None
        except OSError as exc:
            raise ManifestError(path, None, None, f"cannot read: {exc.strerror}") from None


def _csv_rows(
    path: str, pin: ManifestPin | None
) -> Iterator[tuple[int, Mapping[str, object] | RowError]]:
    reader = csv.reader(_text_lines(path, pin))
    columns: list[str] | None = None
    done = 0  # physical lines consumed before the current record
    for cells in reader:
        line, done = done + 1, reader.line_num
        if not any(c.strip() for c in cells):
            continue
        if columns is None:
            columns = _header(path, line, cells)
            continue
        if len(cells) != len(columns):
            yield (
                line,
                RowError(
                    path, line, None, f"has {len(cells)} cells; the header has {len(columns)}"
                ),
            )
            continue
        yield line, dict(zip(columns, cells, strict=True))
    if columns is None:
        raise ManifestError(path, None, None, f"empty: expected a header {','.join(CBR_FIELDS)}")


def _header(path: str, line: int, cells: list[str]) -> list[str]:
    names = [c.strip().lower() for c in cells]
    if "checkpoint_item_id" in names and "backup_id" not in names:
        raise ManifestError(path, line, "checkpoint_item_id", _CSBS_MANIFEST)
    for column in names:
        if column not in _KNOWN:
            raise ManifestError(
                path,
                line,
                column or "(empty)",
                f"unknown column; a CBR manifest has the columns {', '.join(CBR_FIELDS)}",
            )
        if names.count(column) > 1:
            raise ManifestError(path, line, column, "column appears more than once")
    for column in CBR_REQUIRED:
        if column not in names:
            raise ManifestError(
                path,
                line,
                column,
                f"required column is missing; a CBR manifest needs {', '.join(CBR_REQUIRED)}",
            )
    return names


# --- JSON Lines --------------------------------------------------------------------------


def _jsonl_rows(
    path: str, pin: ManifestPin | None
) -> Iterator[tuple[int, Mapping[str, object] | RowError]]:
    for line, text in enumerate(_text_lines(path, pin), 1):
        if not text.strip():
            continue
        try:
            obj = orjson.loads(text)
        except orjson.JSONDecodeError:
            yield line, RowError(path, line, None, "not a JSON object")
            continue
        if not isinstance(obj, dict):
            yield line, RowError(path, line, None, "not a JSON object")
            continue
        if "checkpoint_item_id" in obj and "backup_id" not in obj:
            raise ManifestError(path, line, "checkpoint_item_id", _CSBS_MANIFEST)
        yield line, _json_problem(path, line, obj) or obj


def _json_problem(path: str, line: int, obj: Mapping[str, object]) -> RowError | None:
    unknown = sorted(obj.keys() - _KNOWN)
    if unknown:
        return RowError(
            path, line, unknown[0], f"unknown key; the keys are: {', '.join(CBR_FIELDS)}"
        )
    for key, value in obj.items():
        if key == "enable_acceleration" and (value is None or isinstance(value, bool | str)):
            continue
        if value is not None and not isinstance(value, str):
            return RowError(path, line, key, "must be a string")
    return None
