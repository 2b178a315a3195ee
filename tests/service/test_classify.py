"""Error answers: their bodies read, their exceptions chosen, ``Retry-After`` parsed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import orjson
import pytest

from orchestrator.errors import (
    AlreadyReplicatedError,
    ApiError,
    AuthError,
    Classification,
    ErrorTable,
    PermanentApiError,
    TransientApiError,
)
from orchestrator.service.classify import error_for_response, parse_retry_after
from orchestrator.service.error_body import parse_error_body

# -- error bodies ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"error_code":"CSBS.3001","error_msg":"not found"}', ("CSBS.3001", "not found", None)),
        (b'{"errorCode":"X.1","errorMsg":"camel"}', ("X.1", "camel", None)),
        (b'{"code":"Y.2","message":"plain"}', ("Y.2", "plain", None)),
        (
            b'{"error":{"code":"Z.3","message":"nested","request_id":"r9"}}',
            ("Z.3", "nested", "r9"),
        ),
        (b'{"error":{"code":401,"title":"Unauthorized","message":"bad"}}', ("401", "bad", None)),
        (
            b'{"error_code":"APIGW.0301","error_msg":"m","request_id":"r1"}',
            ("APIGW.0301", "m", "r1"),
        ),
        (b"<html><body><h1>502 Bad Gateway</h1></body></html>", (None, "502 Bad Gateway", None)),
        (b"", (None, None, None)),
        (b"[1, 2]", (None, "[1, 2]", None)),
        (b'{"unexpected": true}', (None, '{"unexpected": true}', None)),
        (
            b'{"error_code":"CSBS.9999","error_msg":"Operation fai',  # cut short: a snippet
            (None, '{"error_code":"CSBS.9999","error_msg":"Operation fai', None),
        ),
    ],
)
def test_error_body_shapes(body: bytes, expected: tuple[str | None, ...]) -> None:
    assert parse_error_body(body) == expected


def test_error_snippets_are_short_and_single_line() -> None:
    body = b"<html>" + b"line\r\n\x1b[31m" * 500 + b"</html>"
    _, msg, _ = parse_error_body(body)
    assert msg is not None
    assert len(msg) <= 203
    assert msg.isprintable()
    assert "\x1b" not in msg


@pytest.mark.parametrize(
    ("status", "code", "msg", "kind"),
    [
        (400, "BackupService.1009", "x", AlreadyReplicatedError),
        (400, None, "The backup has been replicated to cn-east-2", AlreadyReplicatedError),
        (429, "APIG.0308", "throttled", TransientApiError),
        (502, None, None, TransientApiError),
        (408, None, None, TransientApiError),
        (401, "APIGW.0301", "bad", AuthError),
        (403, "CSBS.9009", "unverified", AuthError),
        (401, "APIGW.0303", "clock skew", AuthError),
        (400, "CSBS.9006", "quota", PermanentApiError),
        (400, "CSBS.0001", "service over limit", PermanentApiError),
        (404, "CSBS.3001", "missing", PermanentApiError),
        (302, None, None, PermanentApiError),
    ],
)
def test_error_classification(
    status: int, code: str | None, msg: str | None, kind: type[ApiError]
) -> None:
    body = orjson.dumps({"error_code": code, "error_msg": msg}) if code or msg else b""
    exc = error_for_response(
        status, body, {"X-Request-Id": "req-1"}, table=ErrorTable(), what="POST /x"
    )
    assert type(exc) is kind
    assert (exc.http_status, exc.error_code, exc.request_id) == (status, code, "req-1")
    assert "req-1" in str(exc)


def test_header_request_id_wins_and_retry_after_is_parsed() -> None:
    body = b'{"error_code":"APIG.0308","error_msg":"slow down","request_id":"from-body"}'
    exc = error_for_response(
        429, body, {"X-Request-Id": "from-header", "Retry-After": "7"}, table=ErrorTable(), what="x"
    )
    assert isinstance(exc, TransientApiError)
    assert (exc.request_id, exc.retry_after) == ("from-header", 7.0)
    exc = error_for_response(429, body, {}, table=ErrorTable(), what="x")
    assert exc.request_id == "from-body"


def test_csbs_0001_is_final_and_says_what_to_do() -> None:
    """CSBS.0001 is the *policy* quota: only the user can fix it, so never retried."""
    body = b'{"error_code":"CSBS.0001","error_msg":"service over limit"}'
    exc = error_for_response(400, body, {}, table=ErrorTable(), what="POST /x")
    assert type(exc) is PermanentApiError
    assert "delete unused backup policies" in str(exc)
    assert exc.error_msg == "service over limit"  # the service's own words stay as they were


def test_an_override_table_reclassifies_a_code() -> None:
    table = ErrorTable.with_overrides({"CSBS.9006": Classification.TRANSIENT.value})
    body = b'{"error_code":"CSBS.9006","error_msg":"quota"}'
    assert isinstance(error_for_response(400, body, {}, table=table, what="x"), TransientApiError)


def test_retry_after_values() -> None:
    now = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=30), usegmt=True)
    earlier = format_datetime(now - timedelta(seconds=30), usegmt=True)
    assert parse_retry_after("5", cap_s=60, now=now) == 5.0
    assert parse_retry_after(" 2.5 ", cap_s=60, now=now) == 2.5
    assert parse_retry_after("-3", cap_s=60, now=now) == 0.0
    assert parse_retry_after("600", cap_s=60, now=now) == 60.0
    assert parse_retry_after(later, cap_s=60, now=now) == 30.0
    assert parse_retry_after(earlier, cap_s=60, now=now) == 0.0
    for junk in (None, "", "soon", "nan", "inf", "Mon, 99 Foo 2025"):
        assert parse_retry_after(junk, cap_s=60, now=now) is None
