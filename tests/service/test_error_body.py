"""Error bodies: a code/message pair at any depth, a code only with its own message, and
no input that makes the reader raise (issue 15)."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from orchestrator.service.error_body import SNIPPET, parse_error_body, snippet

_KEYS = st.sampled_from(
    ["error_code", "error_msg", "errorCode", "errorMsg", "code", "message", "error", "x"]
)
_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(_KEYS | st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=30,
)
_FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # Deep, as gateways wrap a backend's answer.
        (
            b'{"a":{"b":{"c":{"error_code":"CSBS.0001","error_msg":"over limit"}}}}',
            ("CSBS.0001", "over limit", None),
        ),
        # A code without its message is no pair: the message beside it elsewhere is not its.
        (
            b'{"code":"WRONG","error":{"message":"unrelated"},"detail":{"code":"A.1",'
            b'"message":"right"}}',
            ("A.1", "right", None),
        ),
        # The first complete pair in document order wins.
        (
            b'{"first":{"errorCode":"F.1","errorMsg":"first"},"second":{"code":"S.2",'
            b'"message":"second"}}',
            ("F.1", "first", None),
        ),
        # The request id of the object holding the pair, when the top level has none.
        (b'{"e":{"code":"Q","message":"m","request_id":"rid"}}', ("Q", "m", "rid")),
        # A lone code is dropped; the raw text stays as the message.
        (b'{"error_code":"ONLY"}', (None, '{"error_code":"ONLY"}', None)),
        # A lone message is kept.
        (b'{"error_msg":"alone"}', (None, "alone", None)),
        # Containers are not codes.
        (b'{"code":{"x":1},"message":"m"}', (None, "m", None)),
    ],
)
def test_pairs_at_any_depth(body: bytes, expected: tuple[str | None, ...]) -> None:
    assert parse_error_body(body) == expected


def test_a_deeply_nested_body_neither_recurses_nor_hangs() -> None:
    deep = b'{"a":' * 1000 + b"1" + b"}" * 1000  # orjson's own nesting limit
    code, msg, _ = parse_error_body(deep)
    assert code is None
    assert msg is not None
    wide = orjson.dumps({str(i): {"x": {}} for i in range(5000)})
    assert parse_error_body(wide)[0] is None


def _pairs(value: Any) -> set[tuple[str, str]]:
    """Every (code, message) that sits together in one object of ``value``."""
    found: set[tuple[str, str]] = set()
    if isinstance(value, dict):
        for code_key, msg_key in (
            ("error_code", "error_msg"),
            ("errorCode", "errorMsg"),
            ("code", "message"),
        ):
            if code_key in value and msg_key in value:
                found.add((str(value[code_key]), str(value[msg_key])))
        for inner in value.values():
            found |= _pairs(inner)
    return found


@_FAST
@given(_JSON)
@example({"code": "A", "x": {"message": "not A's"}})
@example({"x": {"code": "A"}, "message": "not A's either"})
# A code past 64 bits: orjson reads it as a float (-9.223372036854776e+18), so the pair is
# compared as the parser read it, not as Python's int (found by hypothesis in a full run).
@example({"code": -9223372036854775809, "message": 0})
def test_any_json_never_raises_and_a_code_keeps_its_own_message(value: Any) -> None:
    # The standard library writes what orjson refuses (huge ints, NaN): bodies a server
    # might send all the same.
    body = json.dumps(value).encode()
    code, msg, request_id = parse_error_body(body)
    assert msg is None or (msg.isprintable() and len(msg) <= SNIPPET + 3)
    assert request_id is None or isinstance(request_id, str)
    if code is not None:
        assert msg is not None
        # The pair reported sits together in one object of the body (texts are snippets).
        read = orjson.loads(body)  # a code was found: orjson read the body
        assert any(code == _short(c) and msg == _short(m) for c, m in _pairs(read)), (code, msg)


@_FAST
@given(st.binary(max_size=400))
@example(b"\xff\xfe")
@example(b'{"error_code": "X", "error_msg": "cut')
def test_any_bytes_never_raise(body: bytes) -> None:
    code, msg, _ = parse_error_body(body)
    assert code is None or msg is not None
    assert msg is None or msg.isprintable()


def _short(value: str) -> str:
    return snippet(value)
