"""Logging setup: formats, levels, tracebacks without locals, structlog wiring."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from orchestrator.cli.log_sinks import resolve_format
from orchestrator.cli.logs import close_logging, configure_logging
from orchestrator.errors import ConfigError
from tests.helpers.log_lines import json_lines


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    yield
    close_logging()


def _fail_with_local() -> None:
    # Built at run time, so that only a locals dump (not the source shown around the failing
    # line) could put the joined value in the output.
    request_headers = {"X-Auth-Token": "-".join(("local", "token", "value", "0001"))}  # noqa: F841
    raise RuntimeError("boom")


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
