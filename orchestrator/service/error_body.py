"""Reading an error answer's body: the ``(code, message, request id)`` it carries, if any.

Huawei Cloud services answer errors in several shapes (``error_code/error_msg``,
``errorCode/errorMsg``, ``code/message``), sometimes nested (IAM's ``{"error": {...}}``,
gateways wrapping a backend's answer). huaweicloudsdkcore's ``DefaultExceptionHandler``
looks for a *complete* pair at any depth of the JSON object and falls back to the HTTP status
and the raw text. This reader does the same, with two deliberate differences: the first
complete pair in document order wins (the SDK lets a later nested one overwrite it), and the
walk is iterative and bounded, so no body can exhaust the stack or the CPU.

A code is only ever reported together with the message of the same object: a stray ``code``
beside an unrelated ``message`` elsewhere is not a pair. Any bytes whatsoever yield an answer;
nothing here raises.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

import orjson

__all__ = ["ErrorBody", "parse_error_body", "snippet"]

ErrorBody = tuple[str | None, str | None, str | None]
"""``(error_code, error_msg, request_id)``."""

SNIPPET: Final = 200
_TAGS: Final = re.compile(r"<[^>]*>")
_SPACE: Final = re.compile(r"\s+")
_PAIRS: Final = (("error_code", "error_msg"), ("errorCode", "errorMsg"), ("code", "message"))
_MAX_OBJECTS: Final = 1000  # objects visited at most: a body is a few, never thousands
_MSG_KEYS: Final = ("error_msg", "errorMsg", "message")


def snippet(data: object) -> str:
    """A short, single-line, printable excerpt of an answer (HTML tags dropped)."""
    if isinstance(data, bytes | bytearray):
        text = bytes(data[: SNIPPET * 8]).decode("utf-8", "replace")
    else:
        text = str(data)[: SNIPPET * 8]
    text = _SPACE.sub(" ", _TAGS.sub(" ", text)).strip()
    text = "".join(ch for ch in text if ch.isprintable())
    return text[:SNIPPET] + ("..." if len(text) > SNIPPET else "")


def _scalar(value: object) -> str | None:
    """A code or message as text; containers and booleans are not codes or messages."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    text = snippet(value)
    return text or None


def _pair_in(obj: Mapping[str, Any]) -> tuple[str, str] | None:
    for code_key, msg_key in _PAIRS:
        if code_key in obj and msg_key in obj:
            code, msg = _scalar(obj[code_key]), _scalar(obj[msg_key])
            if code is not None and msg is not None:
                return code, msg
    return None


def _find_pair(root: Mapping[str, Any]) -> tuple[str, str, Mapping[str, Any]] | None:
    """The first complete pair, depth first in document order, and the object holding it."""
    stack: list[Mapping[str, Any]] = [root]
    visited = 0
    while stack and visited < _MAX_OBJECTS:
        obj = stack.pop()
        visited += 1
        pair = _pair_in(obj)
        if pair is not None:
            return pair[0], pair[1], obj
        # Reversed, so that the first nested object is looked at first.
        stack.extend(v for v in reversed(list(obj.values())) if isinstance(v, dict))
    return None


def _request_id(*objects: Mapping[str, Any]) -> str | None:
    for obj in objects:
        value = obj.get("request_id")
        if isinstance(value, str) and value:
            return snippet(value) or None
    return None


def parse_error_body(data: bytes) -> ErrorBody:
    """``(error_code, error_msg, request_id)`` from an error answer of any shape.

    A complete code/message pair at any depth gives both; otherwise a top-level message alone
    gives the message (no code), and anything else its snippet as the message.
    """
    try:
        parsed = orjson.loads(data)
    except (ValueError, TypeError):
        return None, snippet(data) or None, None
    if not isinstance(parsed, dict):
        return None, snippet(parsed) or None, None
    found = _find_pair(parsed)
    if found is not None:
        code, msg, holder = found
        return code, msg, _request_id(parsed, holder)
    for key in _MSG_KEYS:
        alone = _scalar(parsed.get(key))
        if alone is not None:
            return None, alone, _request_id(parsed)
    return None, snippet(data) or None, _request_id(parsed)
