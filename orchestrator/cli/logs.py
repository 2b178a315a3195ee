"""Logging setup: structured events, JSON off a terminal, secrets never written.

Called once, by the CLI (:func:`configure_logging`); everything else just does
``structlog.get_logger(...)`` and logs namespaced events (``replicate.retry``, ``run.finished``).

Where lines go:

* **stderr** gets JSON lines when it is not a terminal (or ``fmt="json"``), and structlog's
  console renderer on a terminal (or ``fmt="console"``).
* **--log-file** gets JSON lines, always, appended, *in addition to* stderr: a file is read by
  programs (jq, a log shipper), and a terminal user still sees what happens.
* When a rich :class:`~rich.console.Console` is passed (the CLI does so when the progress display
  is on), stderr lines are printed *through that console*: rich then draws them above the live
  progress rows instead of both fighting over the terminal. See ``orchestrator/engine/progress.py``.

Secrets never reach a line: :class:`~orchestrator.cli.log_redaction.Redactor` masks the
values of secret-named keys and scrubs the known secret strings, a set that grows during the
run (see there). Tracebacks never show local variables (they hold headers and tokens).

JSON processor chain (the hot path; a line costs about 7 µs, a filtered-out debug call 0.1 µs)::

    merge_contextvars, add_log_level, TimeStamper(iso, utc),
    ExceptionRenderer(ExceptionDictTransformer(show_locals=False)), <redaction>,
    JSONRenderer(orjson.dumps)  ->  BytesLoggerFactory(stderr)

Redaction runs *after* the exception renderer so that exception messages are scrubbed too.
The other layouts (a log file, a rich console) are :mod:`~orchestrator.cli.log_sinks`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from typing import IO, Any, BinaryIO, Literal, TextIO

import orjson
import structlog
from rich.console import Console
from structlog.typing import Processor, WrappedLogger

from orchestrator.cli.log_redaction import Redactor
from orchestrator.cli.log_sinks import (
    LogFormat,
    Sinks,
    binary_of,
    exception_renderer,
    resolve_format,
)
from orchestrator.errors import ConfigError
from orchestrator.safe_file import PRIVATE, open_or_create
from orchestrator.secret_set import SecretSet

__all__ = ["close_logging", "configure_logging", "write_final_event"]

#: The redactor of the last configure_logging: the command's final event is written after
#: close_logging, and must be scrubbed of the secrets the run learnt, as every line was.
_last: dict[str, Redactor] = {"redactor": Redactor()}

_LEVELS = frozenset({"debug", "info", "warning", "error", "critical"})


def configure_logging(
    *,
    fmt: LogFormat,
    level: str,
    log_file: str | None,
    stream: TextIO | BinaryIO | None = None,
    secrets: Iterable[str] | SecretSet = (),
    console: Console | None = None,
) -> None:
    """Configure structlog for this process. Call once; :func:`close_logging` undoes it.

    ``stream`` defaults to ``sys.stderr`` as it is at call time. ``console``: when given,
    stderr lines are printed through it (and ``stream`` is unused), so that a rich live display
    on the same console stays intact.

    Raises :class:`ConfigError` for an unknown level or a log file that cannot be opened.
    """
    name = level.lower()
    if name not in _LEVELS:
        raise ConfigError(f"unknown log level {level!r}; use one of: {', '.join(sorted(_LEVELS))}")
    out_stream: IO[Any] = console.file if console is not None else (stream or sys.stderr)
    if console is not None and fmt == "auto":
        stderr_format: Literal["json", "console"] = "console" if console.is_terminal else "json"
    else:
        stderr_format = resolve_format(fmt, out_stream)
    redactor = Redactor(secrets)
    _last["redactor"] = redactor
    processors: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    binary = binary_of(out_stream)
    factory: Callable[..., WrappedLogger]
    if log_file is None and console is None and stderr_format == "json" and binary is not None:
        # The common production case, kept to structlog's fastest path.
        processors += [exception_renderer(), redactor, _json_renderer(redactor)]
        factory = structlog.BytesLoggerFactory(binary)
    else:
        sinks = Sinks(redactor)
        if log_file is not None:
            sinks.add_file(log_file)
        sinks.add_stream(out_stream, console, json=stderr_format == "json")
        processors += [redactor, sinks.renderer()]
        factory = sinks
    previous = structlog.get_config().get("logger_factory")
    if isinstance(previous, Sinks):  # configured twice: do not leak the first log file
        previous.close()
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(name),
        logger_factory=factory,
        cache_logger_on_first_use=False,
    )


def close_logging() -> None:
    """Close the log file :func:`configure_logging` opened (never stderr) and reset structlog."""
    factory = structlog.get_config().get("logger_factory")
    if isinstance(factory, Sinks):
        factory.close()
    structlog.reset_defaults()


def _json_renderer(redactor: Redactor) -> structlog.processors.JSONRenderer:
    def dumps(obj: Any, **kw: Any) -> bytes:
        # A last scrub of the rendered line: repr() of an object the redactor could not look
        # into (structlog's fallback for unknown types) may still contain a secret.
        return redactor.scrub_bytes(orjson.dumps(obj, **kw))

    return structlog.processors.JSONRenderer(serializer=dumps)


def write_final_event(event: dict[str, Any], *, stderr: bool, log_file: str | None) -> None:
    """Write why the command ended (``command.failed``) as one JSON line: to stderr when it
    is a JSON stream, and to ``--log-file`` (always JSON), so that the file does not end
    without the reason. Scrubbed as every log line is. A log file that cannot be opened (it
    may be why the command failed) is skipped: stderr has said so."""
    redactor = _last["redactor"]
    line = redactor.scrub_bytes(orjson.dumps(redactor(None, "error", dict(event))))
    if stderr:
        sys.stderr.write(line.decode() + "\n")
        sys.stderr.flush()
    if log_file is None:
        return
    try:
        fd, _ = open_or_create(log_file, os.O_WRONLY | os.O_APPEND, mode=PRIVATE, follow=True)
        with os.fdopen(fd, "ab") as file:
            file.write(line + b"\n")
    except OSError:
        pass
