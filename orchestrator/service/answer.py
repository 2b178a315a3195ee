"""Reading a 2xx answer of either service: a required field, a body that is not JSON, a
replicate call's accepted record id, the replication capabilities. A field missing or of the
wrong kind is a transient error that quotes a scrubbed snippet of the body, so that an
operator sees what came back."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from orchestrator.errors import TransientApiError, TransportError
from orchestrator.service.error_body import snippet

__all__ = ["accepted_record_id", "destinations_by_region", "not_json", "required_field"]


def required_field(data: Any, name: str, kind: type[Any], scrub: Callable[[str], str]) -> Any:
    """``data[name]`` if it is a ``kind``; else a transient error quoting the answer, with
    ``scrub`` masking any secret the server echoed in it."""
    value = data.get(name) if isinstance(data, dict) else None
    if isinstance(value, bool) or not isinstance(value, kind):
        raise TransientApiError(
            f"answer without a valid {name!r} field",
            http_status=200,
            error_msg=scrub(snippet(data)),
        )
    return value


def not_json(method: str, path: str, data: bytes, scrub: Callable[[str], str]) -> TransientApiError:
    """The error for a 2xx answer that does not parse, quoting it scrubbed."""
    return TransientApiError(
        f"{method} {path}: 2xx answer is not JSON",
        http_status=200,
        error_msg=scrub(snippet(data)),
    )


def accepted_record_id(data: bytes) -> str:
    """The ``replication_record_id`` of a replicate call's 200 (CSBS and CBR answer alike).

    200 means accepted, but without the id we cannot say what was accepted: the outcome is
    unknown, and the pair is reconciled before anything is sent again."""
    try:
        record_id = orjson.loads(data)["replication"]["replication_record_id"]
    except (ValueError, KeyError, TypeError):
        record_id = None
    if not isinstance(record_id, str) or not record_id:
        exc = TransportError(
            "replicate answered 200 without a replication_record_id: outcome unknown",
            maybe_applied=True,
        )
        exc.http_status = 200
        raise exc
    return record_id


def destinations_by_region(regions: list[Any]) -> dict[str, list[str]]:
    """The ``regions`` of a capabilities answer (CSBS and CBR alike) as source region -> the
    regions it may replicate to; malformed entries are left out."""
    result: dict[str, list[str]] = {}
    for entry in regions:
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            destinations = entry.get("replication_destinations") or []
            result[entry["name"]] = [d for d in destinations if isinstance(d, str)]
    return result
