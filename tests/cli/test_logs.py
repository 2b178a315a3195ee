"""Logging setup: formats, sinks, levels, and that secrets never reach an output."""

from __future__ import annotations

import gc
import io
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import structlog
from rich.console import Console

from orchestrator.cli.logs import Redactor, close_logging, configure_logging, resolve_format
from orchestrator.errors import ConfigError

SK = "sk-9f8e7d6c5b4a39281706"
TOKEN = "MIIFvgYJKoZIhvcNAQcCoIIFrzCCBasCAQExDTALBglghkgBZQMEAgEw"


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    yield
    close_logging()


def json_lines(data: bytes | str) -> list[dict[str, Any]]:
    raw = data.encode() if isinstance(data, str) else data
    return [orjson.loads(line) for line in raw.splitlines() if line.strip()]


class _Opaque:
    """An object the redactor cannot look into; only its repr carries the secret."""

    def __repr__(self) -> str:
        return f"<Opaque key={SK}>"


def test_json_lines_on_a_binary_stream() -> None:
    out = io.BytesIO()
    configure_logging(fmt="json", level="info", log_file=None, stream=out)
    log = structlog.get_logger("orchestrator.test")
    log.info("replicate.retry", attempt=2, wait_s=0.4, status=503)
    log.debug("replicate.sent")  # below the level: nothing
    (line,) = json_lines(out.getvalue())
    assert line["event"] == "replicate.retry"
    assert line["level"] == "info"
    assert line["attempt"] == 2
    assert line["status"] == 503
    assert line["timestamp"].endswith("Z")  # ISO 8601, UTC


def test_contextvars_are_merged() -> None:
    out = io.BytesIO()
    configure_logging(fmt="json", level="debug", log_file=None, stream=out)
    with structlog.contextvars.bound_contextvars(run_id="r-1", region="cn-east-2"):
        structlog.get_logger().debug("replicate.sent")
    (line,) = json_lines(out.getvalue())
    assert (line["run_id"], line["region"], line["level"]) == ("r-1", "cn-east-2", "debug")


def test_auto_is_json_off_a_terminal_and_console_on_one() -> None:
    assert resolve_format("auto", io.StringIO()) == "json"

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert resolve_format("auto", Tty()) == "console"
    assert resolve_format("json", Tty()) == "json"
    out = io.StringIO()  # a text-only stream: JSON still, written as text
    configure_logging(fmt="auto", level="info", log_file=None, stream=out)
    structlog.get_logger().info("run.started", pairs=3)
    assert json_lines(out.getvalue())[0]["pairs"] == 3


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


def _raise(exc: Exception) -> None:
    raise exc


def _fail_with_local() -> None:
    # Built at run time, so that only a locals dump (not the source shown around the failing
    # line) could put the joined value in the output.
    request_headers = {"X-Auth-Token": "-".join(("local", "token", "value", "0001"))}  # noqa: F841
    raise RuntimeError("boom")


def test_tracebacks_carry_no_locals_json() -> None:
    out = io.BytesIO()
    configure_logging(fmt="json", level="info", log_file=None, stream=out)
    try:
        _fail_with_local()
    except RuntimeError:
        structlog.get_logger().exception("run.crashed")
    text = out.getvalue().decode()
    assert "local-token-value-0001" not in text
    (line,) = json_lines(text)
    frames = line["exception"][0]["frames"]
    assert frames[-1]["name"] == "_fail_with_local"
    assert all("locals" not in frame for frame in frames)


def test_console_format_with_traceback_and_no_locals() -> None:
    out = io.StringIO()
    configure_logging(fmt="console", level="info", log_file=None, stream=out, secrets=[SK])
    log = structlog.get_logger()
    log.warning("replicate.gave_up", region="cn-east-2", sk=SK)
    try:
        _fail_with_local()
    except RuntimeError:
        log.exception("run.crashed")
    text = out.getvalue()
    assert "replicate.gave_up" in text
    assert "region=cn-east-2" in text
    assert not text.lstrip().startswith("{")
    assert SK not in text
    assert "RuntimeError" in text
    assert "local-token-value-0001" not in text


def test_log_file_gets_json_in_addition_to_the_console(tmp_path: Path) -> None:
    path = tmp_path / "run.log"
    path.write_bytes(b'{"event":"older.line"}\n')
    out = io.StringIO()
    configure_logging(fmt="console", level="info", log_file=str(path), stream=out, secrets=[SK])
    log = structlog.get_logger()
    log.info("run.started", manifest="m.csv", token=TOKEN)
    try:
        _raise(KeyError(SK))
    except KeyError:
        log.exception("run.crashed")
    close_logging()
    lines = json_lines(path.read_bytes())
    assert [line["event"] for line in lines] == ["older.line", "run.started", "run.crashed"]
    assert lines[1]["token"] == "***"
    assert lines[2]["exception"][0]["exc_type"] == "KeyError"
    assert "run.started" in out.getvalue()
    assert not out.getvalue().startswith("{")
    assert SK not in path.read_text() + out.getvalue()
    assert TOKEN not in path.read_text() + out.getvalue()


def test_log_file_with_json_stderr_gets_the_same_lines(tmp_path: Path) -> None:
    path = tmp_path / "run.log"
    out = io.BytesIO()
    configure_logging(fmt="json", level="warning", log_file=str(path), stream=out)
    structlog.get_logger().info("below.level")
    structlog.get_logger().warning("run.stopping", reason="signal")
    close_logging()
    assert json_lines(path.read_bytes()) == json_lines(out.getvalue())
    assert json_lines(out.getvalue())[0]["reason"] == "signal"


def test_lines_go_through_a_given_rich_console() -> None:
    console = Console(file=io.StringIO(), force_terminal=True, width=100)
    configure_logging(fmt="auto", level="info", log_file=None, console=console, secrets=[SK])
    structlog.get_logger().warning("replicate.retry", region="cn-east-2", detail=SK)
    text = console.file.getvalue()  # type: ignore[attr-defined]  # our StringIO
    assert "replicate.retry" in text
    assert "cn-east-2" in text
    assert SK not in text


def test_bad_level_and_unwritable_log_file_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="log level"):
        configure_logging(fmt="json", level="verbose", log_file=None, stream=io.BytesIO())
    with pytest.raises(ConfigError, match="log file"):
        configure_logging(
            fmt="json", level="info", log_file=str(tmp_path / "no" / "x.log"), stream=io.BytesIO()
        )


def test_capture_logs_sees_events_after_configuration() -> None:
    configure_logging(fmt="json", level="info", log_file=None, stream=io.BytesIO())
    with structlog.testing.capture_logs() as logs:
        structlog.get_logger().info("run.finished", exit_code=0)
    assert logs == [{"event": "run.finished", "exit_code": 0, "log_level": "info"}]


def test_configuring_again_closes_the_first_log_file(tmp_path: Path) -> None:
    configure_logging(
        fmt="json", level="info", log_file=str(tmp_path / "a.log"), stream=io.BytesIO()
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        configure_logging(
            fmt="json", level="info", log_file=str(tmp_path / "b.log"), stream=io.BytesIO()
        )
        gc.collect()  # an unclosed first file would warn here
    structlog.get_logger().info("second.config")
    # Only this test's file counts: gc.collect() may also find what an earlier test leaked.
    first = str(tmp_path / "a.log")
    leaks = [w for w in caught if issubclass(w.category, ResourceWarning)]
    assert not [w for w in leaks if first in str(w.message)], leaks
    assert (tmp_path / "a.log").read_bytes() == b""
    assert json_lines((tmp_path / "b.log").read_bytes())[0]["event"] == "second.config"
