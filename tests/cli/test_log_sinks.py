"""The log sinks: a log file beside stderr, console text, a rich console."""

from __future__ import annotations

import gc
import io
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from rich.console import Console

from orchestrator.cli.logs import close_logging, configure_logging
from tests.helpers.log_lines import SK, TOKEN, json_lines


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    yield
    close_logging()


def _raise(exc: Exception) -> None:
    raise exc


def _fail_with_local() -> None:
    # Built at run time, so that only a locals dump (not the source shown around the failing
    # line) could put the joined value in the output.
    request_headers = {"X-Auth-Token": "-".join(("local", "token", "value", "0001"))}  # noqa: F841
    raise RuntimeError("boom")


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
