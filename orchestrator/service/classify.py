"""Which exception an error answer becomes: the error table's verdict on its status, code and
message, with the ``Retry-After`` hint (capped) and the throttle window of a 429.

=========================================  ===========================================
error answer                               raised
=========================================  ===========================================
the table calls it ALREADY_REPLICATED      :class:`AlreadyReplicatedError`
the table calls it TRANSIENT               :class:`TransientApiError` (+ ``retry_after``)
the table calls it AUTH (401, 403)         :class:`AuthError`
any other                                  :class:`PermanentApiError`
=========================================  ===========================================

Everything the server said (code, message, request id) is scrubbed of secrets before an
exception keeps it: the message goes to the ledger, the logs and the terminal.
"""

from __future__ import annotations

import email.utils
import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from orchestrator.errors import (
    AlreadyReplicatedError,
    ApiError,
    AuthError,
    Classification,
    ErrorTable,
    PermanentApiError,
    TransientApiError,
    throttle_window_s,
)
from orchestrator.service.error_body import parse_error_body, snippet

__all__ = ["error_for_response", "parse_retry_after"]

_REQUEST_ID_MAX = 100


def parse_retry_after(
    value: str | None, *, cap_s: float, now: datetime | None = None
) -> float | None:
    """``Retry-After`` (delay-seconds or an HTTP date) as seconds in ``[0, cap_s]``."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), cap_s)


def error_for_response(
    status: int,
    data: bytes,
    headers: Mapping[str, str],
    *,
    table: ErrorTable,
    what: str,
    retry_after_cap_s: float = 60.0,
    scrub: Callable[[str], str] | None = None,
) -> ApiError:
    """The exception for one non-2xx answer (classified by ``table``). ``scrub`` masks
    secrets in what the server said (code, message, request id) before anything keeps it."""
    code, msg, body_request_id = parse_error_body(data)
    request_id = headers.get("X-Request-Id") or body_request_id
    if request_id:
        # Echoed to the terminal, logs and ledger: printable, single-line, short.
        request_id = snippet(request_id)[:_REQUEST_ID_MAX] or None
    if scrub is not None:
        code, msg, request_id = (None if t is None else scrub(t) for t in (code, msg, request_id))
    text = f"{what}: HTTP {status}" + (f" {code}" if code else "") + (f": {msg}" if msg else "")
    if request_id:
        text += f" (request id {request_id})"
    advice = table.advice(code)
    if advice:
        text += f": {advice}"
    fields: dict[str, Any] = {
        "http_status": status,
        "error_code": code,
        "error_msg": msg,
        "request_id": request_id,
    }
    kind = table.classify(status, code, msg)
    if kind is Classification.ALREADY_REPLICATED:
        return AlreadyReplicatedError(text, **fields)
    if kind is Classification.TRANSIENT:
        retry_after = parse_retry_after(headers.get("Retry-After"), cap_s=retry_after_cap_s)
        window = throttle_window_s(code, msg) if status == 429 else None
        return TransientApiError(text, retry_after=retry_after, window_s=window, **fields)
    if kind is Classification.AUTH:
        return AuthError(f"credentials refused: {text}", **fields)
    return PermanentApiError(text, unrecognised=not table.knows(code, msg), **fields)
