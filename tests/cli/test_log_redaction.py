"""Redaction: secret-named keys masked, known secret strings scrubbed from every output."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
import structlog

from orchestrator.cli.log_redaction import Redactor
from orchestrator.cli.logs import close_logging, configure_logging
from tests.helpers.log_lines import SK, TOKEN, json_lines


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    yield
    close_logging()


class _Opaque:
    """An object the redactor cannot look into; only its repr carries the secret."""

    def __repr__(self) -> str:
        return f"<Opaque key={SK}>"


def _raise(exc: Exception) -> None:
    raise exc


def test_secret_keys_are_masked_at_any_depth() -> None:
    out = io.BytesIO()
    configure_logging(fmt="json", level="info", log_file=None, stream=out)
    headers = {"X-Auth-Token": TOKEN, "Content-Type": "application/json"}
    structlog.get_logger().info(
        "http.request",
        sk=SK,
        iam_password="hunter2-long",
        headers=headers,
        retries=[{"Authorization": "SDK-HMAC-SHA256 Signature=abc"}],
        response={"headers": {"x-subject-token": TOKEN}},
        total_tokens=12,  # a limiter size, not a secret
        no_password=None,
    )
    text = out.getvalue().decode()
    assert TOKEN not in text
    assert SK not in text
    assert "hunter2-long" not in text
    assert "Signature=abc" not in text
    (line,) = json_lines(text)
    assert line["sk"] == "***"
    assert line["headers"] == {"X-Auth-Token": "***", "Content-Type": "application/json"}
    assert line["retries"] == [{"Authorization": "***"}]
    assert line["response"]["headers"]["x-subject-token"] == "***"
    assert line["total_tokens"] == 12
    assert line["no_password"] is None
    assert headers["X-Auth-Token"] == TOKEN  # the caller's dict is left alone


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("sk", True),
        ("SK", True),
        ("secret_key", True),
        ("secretKey", True),
        ("password", True),
        ("iam_password", True),
        ("token", True),
        ("auth_token", True),
        ("X-Auth-Token", True),
        ("x-subject-token", True),
        ("securitytoken", True),
        ("Authorization", True),
        ("task", False),
        ("disk_gb", False),
        ("total_tokens", False),
        ("event", False),
        ("checkpoint_item_id", False),
    ],
)
def test_which_keys_count_as_secret(key: str, secret: bool) -> None:
    event = Redactor()(None, "info", {key: "value"})
    assert (event[key] == "***") is secret


def test_known_secret_strings_are_scrubbed_everywhere() -> None:
    out = io.BytesIO()
    configure_logging(fmt="json", level="info", log_file=None, stream=out, secrets=[SK, ""])
    log = structlog.get_logger()
    log.info("auth.debug", url=f"https://iam/?sk={SK}", notes=["a", f"x{SK}y"], obj=_Opaque())
    try:
        _raise(ValueError(f"signing failed for {SK}"))
    except ValueError:
        log.exception("auth.failed")
    text = out.getvalue().decode()
    assert SK not in text
    first, second = json_lines(text)
    assert first["url"] == "https://iam/?sk=***"
    assert first["notes"] == ["a", "x***y"]
    assert first["obj"] == "<Opaque key=***>"
    assert second["exception"][0]["exc_value"] == "signing failed for ***"


def test_a_secret_that_json_must_escape_is_still_masked() -> None:
    odd = 'pa"ss\\word-1234'
    out = io.BytesIO()
    configure_logging(fmt="json", level="info", log_file=None, stream=out, secrets=[odd])
    structlog.get_logger().info("auth.debug", detail=f"using {odd}")
    assert json_lines(out.getvalue())[0]["detail"] == "using ***"
