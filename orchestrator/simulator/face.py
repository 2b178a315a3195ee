"""What the CSBS and the CBR faces share: the checks of a replicate request's fields, and a
replication started under the fault knobs (a capacity refusal says when to try again)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

from orchestrator.simulator.faults import FaultInjector
from orchestrator.simulator.records import Record
from orchestrator.simulator.refusal import Refusal, invalid
from orchestrator.simulator.state import Estate

__all__ = ["destination", "options", "start_replication"]

_REGION: Final = re.compile(r"^[a-z]{2}(-[a-z0-9]+)+$")
_PROJECT: Final = re.compile(
    r"^([0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$"
)
_MAX_TEXT: Final = 255


def destination(fields: Mapping[str, Any]) -> tuple[str, str]:
    """The destination region and project of a replicate body, or a 400."""
    region = fields.get("destination_region")
    if not isinstance(region, str) or not _REGION.match(region):
        raise invalid("destination_region is missing or invalid")
    project = fields.get("destination_project_id")
    if not isinstance(project, str) or not _PROJECT.match(project):
        raise invalid("destination_project_id is missing or invalid")
    return region, project


def options(fields: Mapping[str, Any]) -> tuple[str, str, bool]:
    """``name``, ``description`` and ``enable_acceleration`` of a replicate body, or a 400."""
    name = fields.get("name", "")
    description = fields.get("description", "")
    acceleration = fields.get("enable_acceleration", False)
    texts: Iterable[tuple[str, object]] = (("name", name), ("description", description))
    for field, value in texts:
        if not isinstance(value, str) or len(value) > _MAX_TEXT:
            raise invalid(f"{field} must be a string of at most 255 characters")
    if not isinstance(acceleration, bool):
        raise invalid("enable_acceleration must be a boolean")
    return str(name), str(description), acceleration


def start_replication(
    estate: Estate,
    faults: FaultInjector,
    *,
    project_id: str,
    item_id: str,
    region: str,
    destination_project: str,
    name: str,
    acceleration: bool,
) -> Record:
    """:meth:`Estate.replicate` under the fault knobs' limits; a capacity refusal carries the
    ``Retry-After`` they say."""
    try:
        return estate.replicate(
            project_id,
            item_id,
            region,
            destination_project,
            limits=faults.config,
            name=name,
            enable_acceleration=acceleration,
        )
    except Refusal as refusal:
        if refusal.kind == "capacity":
            refusal.headers.update(faults.retry_after_headers())
        raise
