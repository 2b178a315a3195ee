"""How the simulator writes an answer: JSON with a request id, an error in the service's
shape, a cut connection; and how it reads a request's JSON object."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from orchestrator.simulator.refusal import Refusal, invalid

__all__ = ["drop", "json_response", "load_object", "refusal_response"]


def json_response(
    status: int, payload: object, request_id: str, headers: dict[str, str] | None = None
) -> web.Response:
    response = web.Response(
        body=orjson.dumps(payload), status=status, content_type="application/json"
    )
    response.headers["X-Request-Id"] = request_id
    if headers:
        response.headers.update(headers)
    return response


def refusal_response(refusal: Refusal, request_id: str) -> web.Response:
    body: Mapping[str, object] = refusal.body or {
        "error_code": refusal.code,
        "error_msg": refusal.msg,
        "request_id": request_id,
    }
    if not refusal.code and refusal.body is None:
        # No documented code for this answer (a 503): say none rather than invent one.
        body = {"error_msg": refusal.msg, "request_id": request_id}
    return json_response(refusal.status, body, request_id, refusal.headers)


def drop(request: web.Request) -> web.Response:
    """Cut the connection; the response returned is never written."""
    transport = request.transport
    if transport is not None:
        transport.abort()
    return web.Response(status=500)


def load_object(body: bytes, what: str) -> dict[str, Any]:
    """A request body that must be a JSON object (empty: ``{}``), or a 400."""
    try:
        data = orjson.loads(body) if body else {}
    except ValueError:
        raise invalid(f"the {what} body is not valid JSON") from None
    if not isinstance(data, dict):
        raise invalid(f"the {what} body must be a JSON object")
    return data
