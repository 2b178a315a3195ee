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
  progress rows instead of both fighting over the terminal. See ``orchestrator/progress.py``.

Secrets: a redaction processor masks the values of keys named like a secret (``sk``,
``password``, ``pwd``, ``passphrase``, ``token``, ``authorization``, ``api_key``,
``private_key``, ``credential``, ``signature``, ``x-auth-token``, ``x-subject-token``, nested
dicts and lists too) and replaces every occurrence of the known secret strings in string
values with ``***``. Rendered lines are scrubbed once more for the secret strings in every
escaped form (JSON, ``repr``, both), which also covers ``repr()`` of odd objects and console
tracebacks. Tracebacks never show local variables (they hold headers and tokens). The known
secrets are a :class:`~orchestrator.secret_set.SecretSet` that grows during the run: the
client adds each token it learns (an IAM token) before sending it.

JSON processor chain (the hot path; a line costs about 7 µs, a filtered-out debug call 0.1 µs)::

    merge_contextvars, add_log_level, TimeStamper(iso, utc),
    ExceptionRenderer(ExceptionDictTransformer(show_locals=False)), <redaction>,
    JSONRenderer(orjson.dumps)  ->  BytesLoggerFactory(stderr)

Redaction runs *after* the exception renderer so that exception messages are scrubbed too.
"""

from __future__ import annotations

import io
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import IO, Any, BinaryIO, Literal, TextIO

import orjson
import structlog
from rich.console import Console
from rich.text import Text
from structlog.typing import EventDict, Processor, WrappedLogger

from orchestrator.errors import ConfigError
from orchestrator.safe_file import PRIVATE, open_or_create
from orchestrator.safe_text import for_terminal
from orchestrator.secret_set import MASK, SecretSet

__all__ = ["LogFormat", "Redactor", "close_logging", "configure_logging", "resolve_format"]

LogFormat = Literal["auto", "json", "console"]

_LEVELS = frozenset({"debug", "info", "warning", "error", "critical"})
_KEY_CACHE_SIZE = 4096
_CONSOLE_VALUE_MAX = 4000

# Words that mark a key as secret wherever they appear in it (``iam_password``, ``X-Auth-Token``).
_SECRET_WORDS = frozenset(
    {
        "secret",
        "sk",
        "password",
        "passwd",
        "pwd",
        "passphrase",
        "token",
        "authorization",
        "cookie",
        "credential",
        "credentials",
        "signature",
    }
)
# Long enough to be matched inside run-together names (``secretKey``, ``securitytoken``,
# ``api_key`` once separators are dropped); ``token`` only at the end, so ``total_tokens`` (a
# limiter size) stays readable.
_SECRET_INFIXES = (
    "secret",
    "password",
    "passwd",
    "passphrase",
    "authorization",
    "credential",
    "apikey",
    "privatekey",
    "accesskeysecret",
)
_SEPARATORS = str.maketrans("", "", "_-. ")
# Values that can hold no secret text; skipped before the (slow, ABC) Mapping check.
_PLAIN = frozenset({int, float, bool, type(None)})
_CAMEL = re.compile(r"([a-z0-9])([A-Z])")
_WORD = re.compile(r"[a-z0-9]+")


def _is_secret_key(key: str) -> bool:
    lowered = key.lower().translate(_SEPARATORS)
    if any(infix in lowered for infix in _SECRET_INFIXES):
        return True
    words = _WORD.findall(_CAMEL.sub(r"\1_\2", key).lower())
    return any(word in _SECRET_WORDS or word.endswith("token") for word in words)


class Redactor:
    """A structlog processor: mask secret-named keys, scrub known secret strings.

    Never mutates nested containers it was given (they may be the caller's live headers dict):
    it builds new ones.
    """

    __slots__ = ("_key_cache", "_secrets")

    def __init__(self, secrets: Iterable[str] | SecretSet = ()) -> None:
        # Shared, not copied: secrets learnt later in the run (tokens) are scrubbed too.
        self._secrets = secrets if isinstance(secrets, SecretSet) else SecretSet(secrets)
        # Event keys come from code, so this memo stays small; it keeps the per-line cost at one
        # dict lookup per key. Capped: nested dicts may be keyed by data (item ids).
        self._key_cache: dict[str, bool] = {}

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        # The hot path (every log line): one memo lookup per key, and work only for strings,
        # containers and secret keys. Replacing values while iterating is safe (no new keys).
        cache = self._key_cache
        for key, value in event_dict.items():
            secret = cache.get(key)
            if secret is None:
                secret = self._secret_key(key)
            if secret:
                if value is not None:
                    event_dict[key] = MASK
            else:
                kind = type(value)
                if kind is str:
                    if self._secrets:
                        event_dict[key] = self.scrub(value)
                elif kind not in _PLAIN and isinstance(value, Mapping | list | tuple):
                    event_dict[key] = self._clean(value)
        return event_dict

    def scrub(self, text: str) -> str:
        """``text`` with every known secret string (in every escaped form) replaced by ``***``."""
        return self._secrets.scrub(text)

    def scrub_bytes(self, data: bytes) -> bytes:
        return self._secrets.scrub_bytes(data)

    def _secret_key(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        known = self._key_cache.get(key)
        if known is None:
            known = _is_secret_key(key)
            if len(self._key_cache) < _KEY_CACHE_SIZE:
                self._key_cache[key] = known
        return known

    def _value(self, key: object, value: Any) -> Any:
        if value is None:
            return None  # "no password was set" is safe to show and useful
        if self._secret_key(key):
            return MASK
        return self._clean(value)

    def _clean(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.scrub(value) if self._secrets else value
        if isinstance(value, Mapping):
            return {k: self._value(k, v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._clean(item) for item in value]
        return value


def resolve_format(fmt: LogFormat, stream: IO[Any]) -> Literal["json", "console"]:
    """``auto`` means console on a terminal, JSON otherwise."""
    if fmt != "auto":
        return fmt
    try:
        return "console" if stream.isatty() else "json"
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return "json"


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
    processors: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    binary = _binary_of(out_stream)
    factory: Callable[..., WrappedLogger]
    if log_file is None and console is None and stderr_format == "json" and binary is not None:
        # The common production case, kept to structlog's fastest path.
        processors += [_exception_renderer(), redactor, _json_renderer(redactor)]
        factory = structlog.BytesLoggerFactory(binary)
    else:
        sinks = _Sinks(redactor)
        if log_file is not None:
            sinks.add_file(log_file)
        sinks.add_stream(out_stream, console, json=stderr_format == "json")
        processors += [redactor, sinks.renderer()]
        factory = sinks
    previous = structlog.get_config().get("logger_factory")
    if isinstance(previous, _Sinks):  # configured twice: do not leak the first log file
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
    if isinstance(factory, _Sinks):
        factory.close()
    structlog.reset_defaults()


def _exception_renderer() -> structlog.processors.ExceptionRenderer:
    # The stock dict_tracebacks shows locals: they hold headers and tokens.
    return structlog.processors.ExceptionRenderer(
        structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
    )


def _json_renderer(redactor: Redactor) -> structlog.processors.JSONRenderer:
    def dumps(obj: Any, **kw: Any) -> bytes:
        # A last scrub of the rendered line: repr() of an object the redactor could not look
        # into (structlog's fallback for unknown types) may still contain a secret.
        return redactor.scrub_bytes(orjson.dumps(obj, **kw))

    return structlog.processors.JSONRenderer(serializer=dumps)


def _binary_of(stream: IO[Any]) -> BinaryIO | None:
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


class _Sinks:
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
        binary = _binary_of(stream)
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
        exception_renderer = _exception_renderer()
        redactor = self._redactor

        def render(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> Any:
            json_line = b""
            if needs_json:
                data = dict(event_dict) if needs_console else event_dict
                if "exc_info" in data:
                    data = redactor(
                        logger, method_name, exception_renderer(logger, method_name, data)
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
