"""What a manifest row is, and the rules every row follows whatever its format.

The fields and their rules are tabled in :mod:`orchestrator.engine.manifest`. This module
holds what the CSV and JSON Lines readers share: the fields, the id patterns their fast
paths are built from, :class:`RowError`, the shapes a valid row is built in, and the
*careful path* (:func:`validate`), which checks every field and names the first one wrong.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, NamedTuple, TypeVar

from orchestrator.models import ReplicationTask

__all__ = [
    "BOM",
    "CBR_MANIFEST",
    "CBR_ONLY",
    "FIELDS",
    "KNOWN",
    "MAX_TEXT",
    "OPTIONAL_FIELDS",
    "PROJECT_LC",
    "REGION",
    "REQUIRED_FIELDS",
    "TRUE",
    "UUID_LC",
    "Make",
    "RowError",
    "RowFields",
    "Values",
    "check_row",
    "encoding_reason",
    "has_control",
    "is_project_id",
    "is_region",
    "is_region_name",
    "parse_bool_text",
    "remake",
    "validate",
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
KNOWN: Final = frozenset(FIELDS)
#: Columns only a CBR manifest has: a CSBS run refuses the whole file, naming the flag.
CBR_ONLY: Final = frozenset({"backup_id", "destination_vault_id"})
CBR_MANIFEST: Final = (
    "this is a CBR manifest (backup_id, destination_vault_id): run with --service cbr; "
    f"a CSBS manifest has the columns {', '.join(FIELDS)}"
)

BOM: Final = b"\xef\xbb\xbf"
MAX_TEXT: Final = 255

_UUID: Final = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_PROJECT: Final = rf"[0-9a-fA-F]{{32}}|{_UUID}"
REGION: Final = r"[a-z]{2,}(?:-[a-z0-9]+)+"
_is_uuid = re.compile(_UUID).fullmatch
is_project_id = re.compile(_PROJECT).fullmatch
is_region = re.compile(REGION).fullmatch
has_control = re.compile(r"[\x00-\x1f\x7f]").search

# The fast paths accept lower-case ids only, so that they need no case folding.
UUID_LC: Final = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
PROJECT_LC: Final = rf"[0-9a-f]{{32}}|{UUID_LC}"

TRUE: Final = frozenset({"true", "1", "yes"})
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


def is_region_name(value: str) -> bool:
    """Whether ``value`` has the shape of a region name (``cn-north-1``)."""
    return is_region(value) is not None


def encoding_reason(exc: UnicodeDecodeError) -> str:
    return f"not valid UTF-8 (byte {exc.object[exc.start]:#04x} at column {exc.start + 1})"


#: A valid row as a plain tuple, in :class:`ReplicationTask`'s field order: checkpoint item,
#: source project, destination region, destination project, source region, name,
#: description, enable_acceleration, line.
RowFields = tuple[str, str, str, str, str | None, str | None, str | None, bool | None, int]

_T = TypeVar("_T")
#: Builds a row's result from its values, positionally in ReplicationTask's field order.
Make = Callable[[str, str, str, str, str | None, str | None, str | None, bool | None, int], _T]


def remake(task: ReplicationTask, make: Make[_T]) -> _T:
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


# --- The careful path, shared by both formats ------------------------------------------------


class _BadBool:
    """Marks an ``enable_acceleration`` value that is not a boolean (kept for the message)."""

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value


def parse_bool_text(value: str | None) -> bool | _BadBool | None:
    if value is None:
        return None
    folded = value.lower()
    if folded in TRUE:
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
        accel = parse_bool_text(accel.strip() or None)
    row = Values(
        text("checkpoint_item_id") or "",
        text("destination_region") or "",
        text("destination_project_id") or "",
        text("project_id"),
        text("source_region"),
        text("name"),
        text("description"),
        accel,
    )
    return validate(path, line, row, default_project_id)


class Values(NamedTuple):
    """One row's values, stripped; ``""`` or ``None`` when absent."""

    item: str
    dregion: str
    dproject: str
    project: str | None
    sregion: str | None
    name: str | None
    description: str | None
    accel: object


def validate(
    path: str, line: int, v: Values, default_project: str | None
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


def _id_problem(v: Values) -> tuple[str, str] | None:
    """The first missing or malformed id, as (field, what to fix)."""
    for field, value in zip(REQUIRED_FIELDS, (v.item, v.dregion, v.dproject), strict=True):
        if not value:
            return field, "required value is missing or empty"
    checks: tuple[tuple[str, str | None, Callable[[str], object], str], ...] = (
        ("checkpoint_item_id", v.item, _is_uuid, "a UUID (8-4-4-4-12 hex digits)"),
        ("destination_region", v.dregion, is_region, _A_REGION),
        ("destination_project_id", v.dproject, is_project_id, _A_PROJECT),
        ("project_id", v.project, is_project_id, _A_PROJECT),
        ("source_region", v.sregion, is_region, _A_REGION),
    )
    for name, given, valid, what in checks:
        if given is not None and not valid(given):
            return name, f"{given!r} is not {what}"
    if v.sregion == v.dregion:
        return "destination_region", "is the same as source_region: nothing to replicate"
    return None


def _text_problem(v: Values) -> tuple[str, str] | None:
    """The first bad optional value (name, description, enable_acceleration)."""
    for field, text in (("name", v.name), ("description", v.description)):
        if text is not None:
            if len(text) > MAX_TEXT:
                return field, f"is {len(text)} characters long; at most {MAX_TEXT} are allowed"
            if has_control(text):
                return field, "contains a control character (tab, newline, ...)"
    accel = v.accel
    if accel is not None and type(accel) is not bool:
        shown = accel.value if isinstance(accel, _BadBool) else accel
        return "enable_acceleration", f"{shown!r} is not a boolean (true/false, yes/no, 1/0)"
    return None
