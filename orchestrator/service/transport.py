"""One HTTP exchange, and the only place aiohttp's exceptions become :mod:`orchestrator.errors`
exceptions:

=========================================  ===========================================
what happened                              raised
=========================================  ===========================================
no connection (refused, DNS, connect       :class:`TransportError` ``maybe_applied=False``
timeout): nothing was sent
cut, reset, read timeout, garbage answer   :class:`TransportError` ``maybe_applied=True``
after the request may have been written,
or an answer longer than ``max_body``
TLS failure                                :class:`PermanentApiError`
invalid URL                                :class:`ConfigError`
=========================================  ===========================================

An answer body is read up to ``max_body`` (by its declared length first, else while it
streams in), so that a broken or hostile server costs a failed call and never the run.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping

import aiohttp
import yarl

from orchestrator.errors import ConfigError, PermanentApiError, TransportError
from orchestrator.service.error_body import SNIPPET
from orchestrator.service.settings import MAX_BODY, ClientSettings

__all__ = ["send", "ssl_setting"]


async def send(
    session: aiohttp.ClientSession,
    method: str,
    url: yarl.URL,
    headers: dict[str, str],
    body: bytes | None,
    *,
    limits: aiohttp.ClientTimeout | None = None,
    max_body: int = MAX_BODY,
) -> tuple[int, bytes, Mapping[str, str]]:
    """One HTTP exchange (``limits``: the session's timeouts when None): status, body and
    headers of whatever answer came, or the mapped exception."""
    try:
        async with session.request(
            method,
            url,
            headers=headers,
            data=body,
            allow_redirects=False,
            timeout=limits or session.timeout,
        ) as resp:
            return resp.status, await _read_bounded(resp, max_body), resp.headers
    except _TooLarge as exc:
        # The request was sent and maybe applied; the answer is unusable. Like a cut answer:
        # the pair is reconciled before any resend.
        raise TransportError(
            f"{method} {url.raw_path}: answer too large ({exc}; the limit is {max_body} "
            "bytes); not read",
            maybe_applied=True,
        ) from None
    except (aiohttp.ClientSSLError, ssl.SSLError) as exc:
        what = f"{method} {url.raw_path}"
        raise PermanentApiError(
            f"{what}: TLS failure ({_describe(exc)}); check the endpoint and CA settings"
        ) from exc
    except aiohttp.InvalidURL as exc:
        raise ConfigError(f"{method} {url.raw_path}: invalid URL") from exc
    except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
        # No connection was made: the request cannot have reached the service.
        raise TransportError(
            f"{method} {url.raw_path}: cannot connect ({_describe(exc)})", maybe_applied=False
        ) from exc
    except (aiohttp.ClientError, TimeoutError) as exc:
        # Cut, reset, read timeout or an unparsable answer after the request was (maybe)
        # written. A server that closes without answering is indistinguishable from one that
        # applied the request and then dropped.
        raise TransportError(
            f"{method} {url.raw_path}: no complete answer ({_describe(exc)})", maybe_applied=True
        ) from exc


class _TooLarge(Exception):
    """An answer body over the limit (its declared or streamed size is the message)."""


async def _read_bounded(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """The body, unless it is longer than ``limit``. A declared length within the limit (every
    answer of the real service and the simulator) costs one plain read."""
    length = resp.content_length
    if length is not None:
        if length > limit:
            raise _TooLarge(f"{length} bytes declared")
        return await resp.read()
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(1 << 16):
        size += len(chunk)
        if size > limit:
            raise _TooLarge(f"more than {limit} bytes streamed")
        chunks.append(chunk)
    return b"".join(chunks)


def _describe(exc: BaseException) -> str:
    # aiohttp's messages name host, port and OS error: no headers or credentials.
    text = str(exc)
    return type(exc).__name__ + (f": {text[:SNIPPET]}" if text else "")


def ssl_setting(settings: ClientSettings) -> ssl.SSLContext | bool:
    """The connector's ``ssl``: no verification, a private CA bundle, or the system store."""
    if not settings.verify_tls:
        return False
    if settings.ca_file:
        try:
            return ssl.create_default_context(cafile=settings.ca_file)
        except (OSError, ssl.SSLError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or exc
            raise ConfigError(
                f"--ca-file {settings.ca_file}: cannot load CA certificates ({reason}); "
                "give a PEM file of one or more CA certificates"
            ) from None
    return True
