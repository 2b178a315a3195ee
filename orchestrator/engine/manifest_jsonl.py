"""The JSON Lines manifest: one JSON object per line, its keys the manifest's fields.

Each object first meets the *fast path*, a few checks that only accept an object whose
values are certainly valid, and otherwise the careful path
(:func:`~orchestrator.engine.manifest_rows.validate`) that says what is wrong.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, TypeVar

import orjson

from orchestrator.engine.manifest_rows import (
    BOM,
    CBR_MANIFEST,
    CBR_ONLY,
    FIELDS,
    KNOWN,
    MAX_TEXT,
    PROJECT_LC,
    REGION,
    UUID_LC,
    Make,
    RowError,
    Values,
    encoding_reason,
    has_control,
    is_region,
    parse_bool_text,
    remake,
    validate,
)
from orchestrator.errors import ManifestError
from orchestrator.models import ReplicationTask

__all__ = ["jsonl_rows"]

_fast_ids = re.compile(rf"{UUID_LC},{REGION},(?:{PROJECT_LC})").fullmatch
_fast_ids_project = re.compile(rf"{UUID_LC},{REGION},(?:{PROJECT_LC}),(?:{PROJECT_LC})").fullmatch

_T = TypeVar("_T")


def jsonl_rows(
    name: str,
    lines: Iterator[tuple[int, bytes]],
    default_project: str | None,
    *,
    only: bytes | bytearray | None,
    make: Make[_T],
) -> Iterator[_T | RowError]:
    """The rows of a JSON Lines manifest's numbered lines, blank lines skipped."""
    loads = orjson.loads
    for lineno, raw in lines:
        if only is not None and not (lineno < len(only) and only[lineno]):
            continue
        data = raw.removeprefix(BOM) if lineno == 1 else raw
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
        yield row if isinstance(row, RowError) else remake(row, make)


def _json_reason(data: bytes, exc: orjson.JSONDecodeError) -> str:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as bad:
        return encoding_reason(bad)
    return f"invalid JSON: {exc}"


def _fast_json(
    obj: dict[str, Any], line: int, default_project: str | None, make: Make[_T]
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
    obj: dict[str, Any], ids: tuple[str, str, str, str], line: int, make: Make[_T]
) -> _T | None:
    """The rest of the fast path, for an object with optional keys."""
    if not obj.keys() <= KNOWN:
        return None
    get = obj.get
    sregion = get("source_region")
    accel = get("enable_acceleration")
    name = get("name")
    description = get("description")
    if not (
        (sregion is None or (type(sregion) is str and is_region(sregion)))
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
        type(value) is str and len(value) <= MAX_TEXT and not has_control(value)
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
    unknown = obj.keys() - KNOWN
    if unknown & CBR_ONLY:
        raise ManifestError(path, line, sorted(unknown & CBR_ONLY)[0], CBR_MANIFEST)
    if unknown:
        key = sorted(unknown)[0]
        return RowError(path, line, key, f"unknown key; the keys are: {', '.join(FIELDS)}", *ids)
    for key, value in obj.items():
        if key != "enable_acceleration" and value is not None and type(value) is not str:
            return RowError(path, line, key, "must be a string", *ids)
    accel = obj.get("enable_acceleration")
    if type(accel) is str:
        accel = parse_bool_text(accel.strip() or None)

    def text(key: str) -> str | None:
        value: str | None = obj.get(key)
        return (value.strip() or None) if value is not None else None

    values = Values(
        text("checkpoint_item_id") or "",
        text("destination_region") or "",
        text("destination_project_id") or "",
        text("project_id"),
        text("source_region"),
        text("name"),
        text("description"),
        accel,
    )
    return validate(path, line, values, default_project)


def _raw(value: object) -> str | None:
    return value if type(value) is str and value else None
