"""Where log lines go when there is more than stderr's JSON: a log file, a rich console, a
text-only stream. Each wanted format is rendered once per line, then written to every sink
that wants it."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any, BinaryIO, Literal

import orjson
import structlog
from rich.console import Console
from rich.text import Text
from structlog.typing import EventDict, Processor, WrappedLogger

from orchestrator.cli.log_redaction import Redactor
from orchestrator.errors import ConfigError
from orchestrator.safe_file import PRIVATE, open_or_create
from orchestrator.safe_text import for_terminal

__all__ = ["LogFormat", "Sinks", "binary_of", "exception_renderer", "resolve_format"]

LogFormat = Literal["auto", "json", "console"]

_CONSOLE_VALUE_MAX = 4000


def resolve_format(fmt: LogFormat, stream: IO[Any]) -> Literal["json", "console"]:
    """``auto`` means console on a terminal, JSON otherwise."""
    if fmt != "auto":
        return fmt
    try:
        return "console" if stream.isatty() else "json"
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return "json"


def exception_renderer() -> structlog.processors.ExceptionRenderer:
    # The stock dict_tracebacks shows locals: they hold headers and tokens.
    return structlog.processors.ExceptionRenderer(
        structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
    )


def binary_of(stream: IO[Any]) -> BinaryIO | None:
    """The byte stream under ``stream`` (``sys.stderr.buffer``), or None for a text-only one."""
    if isinstance(stream, io.RawIOBase | io.BufferedIOBase):
        return stream  # type: ignore[return-value]  # an io binary stream is a BinaryIO
    buffer = getattr(stream, "buffer", None)
    if buffer is None:
        return None
    stream.flush()  # keep order with anything already written through the text layer
    return buffer  # type: ignore[no-any-return]  # TextIOWrapper.buffer is a binary stream


@dataclass(frozen=True, slots=True)
class _Sink:
    json: bool  # wants JSON lines (else console-rendered text)
    terminal: bool  # colours make sense
    write: Callable[[str | bytes], None]


class Sinks:
    """A logger factory for the less common layouts (a log file, a rich console, a text-only
    stream): the final processor renders each wanted format once, the logger writes each sink."""

    def __init__(self, redactor: Redactor) -> None:
        self._redactor = redactor
        self._sinks: list[_Sink] = []
        self._owned: list[BinaryIO] = []

    def __call__(self, *args: Any) -> _FanOutLogger:
        return _FanOutLogger(tuple(sink.write for sink in self._sinks))

    def add_file(self, path: str) -> None:
        try:
            # 0600 when created (log lines name projects and errors), a regular file only
            # (a FIFO would block, a symlink planted in a shared directory redirect us).
            fd, _ = open_or_create(path, os.O_WRONLY | os.O_APPEND, mode=PRIVATE, follow=True)
            file = os.fdopen(fd, "ab")
        except OSError as exc:
            raise ConfigError(f"cannot open log file {path!r}: {exc.strerror}") from exc
        self._owned.append(file)
        self._sinks.append(_Sink(json=True, terminal=False, write=_binary_writer(file)))

    def add_stream(self, stream: IO[Any], console: Console | None, *, json: bool) -> None:
        if console is not None:
            write = _console_writer(console, ansi=not json)
            self._sinks.append(_Sink(json=json, terminal=console.is_terminal, write=write))
            return
        terminal = resolve_format("auto", stream) == "console"
        binary = binary_of(stream)
        write = _binary_writer(binary) if binary is not None else _text_writer(stream)
        self._sinks.append(_Sink(json=json, terminal=terminal, write=write))

    def renderer(self) -> Processor:
        flags = tuple(sink.json for sink in self._sinks)
        needs_json = any(flags)
        needs_console = not all(flags)
        colors = any(sink.terminal for sink in self._sinks if not sink.json)
        console_renderer = structlog.dev.ConsoleRenderer(
            colors=colors,
            exception_formatter=structlog.dev.RichTracebackFormatter(
                show_locals=False, color_system="truecolor" if colors else None
            ),
        )
        render_exception = exception_renderer()
        redactor = self._redactor

        def render(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> Any:
            json_line = b""
            if needs_json:
                data = dict(event_dict) if needs_console else event_dict
                if "exc_info" in data:
                    data = redactor(
                        logger, method_name, render_exception(logger, method_name, data)
                    )
                json_line = redactor.scrub_bytes(orjson.dumps(data, default=repr))
            console_line = ""
            if needs_console:
                # Values may quote the service or a file: escape their control characters so
                # that only the renderer's own colours reach the terminal.
                shown = {
                    k: for_terminal(v, _CONSOLE_VALUE_MAX) if type(v) is str else v
                    for k, v in event_dict.items()
                }
                # Tracebacks are rendered here, after the redactor ran: scrub the text itself.
                console_line = redactor.scrub(str(console_renderer(logger, method_name, shown)))
            return tuple(json_line if flag else console_line for flag in flags), {}

        return render

    def close(self) -> None:
        for file in self._owned:
            file.close()
        self._owned.clear()


class _FanOutLogger:
    """Writes the n rendered outputs to the n sinks, in order."""

    __slots__ = ("_writes",)

    def __init__(self, writes: tuple[Callable[[str | bytes], None], ...]) -> None:
        self._writes = writes

    def msg(self, *outputs: str | bytes) -> None:
        for write, output in zip(self._writes, outputs, strict=True):
            write(output)

    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg


def _binary_writer(file: BinaryIO) -> Callable[[str | bytes], None]:
    def write(output: str | bytes) -> None:
        data = output.encode() if isinstance(output, str) else output
        file.write(data + b"\n")
        file.flush()

    return write


def _text_writer(stream: IO[Any]) -> Callable[[str | bytes], None]:
    def write(output: str | bytes) -> None:
        text = output.decode() if isinstance(output, bytes) else output
        stream.write(text + "\n")  # only text-only streams get here
        stream.flush()

    return write


def _console_writer(console: Console, *, ansi: bool) -> Callable[[str | bytes], None]:
    def write(output: str | bytes) -> None:
        text = output.decode() if isinstance(output, bytes) else output
        if ansi:  # the console renderer's colours, re-read by rich so it can place the line
            console.print(Text.from_ansi(text), no_wrap=True, overflow="ignore", crop=False)
        else:
            console.out(text, highlight=False)

    return write
