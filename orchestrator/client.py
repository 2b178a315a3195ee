"""The CSBS HTTP calls, and the one place where answers and aiohttp errors become exceptions.

:class:`CsbsClient` owns one aiohttp session for a run. Its methods return parsed JSON or
raise only :mod:`orchestrator.errors` exceptions:

=========================================  ===========================================
what happened                              raised
=========================================  ===========================================
2xx                                        (the result)
error answer the table calls ALREADY_...   :class:`AlreadyReplicatedError`
error answer the table calls TRANSIENT     :class:`TransientApiError` (+ ``retry_after``)
401 (after one token renewal), 403         :class:`AuthError`
any other error answer                     :class:`PermanentApiError`
no connection (refused, DNS, connect       :class:`TransportError` ``maybe_applied=False``
timeout): nothing was sent
cut, reset, read timeout, garbage answer   :class:`TransportError` ``maybe_applied=True``
after the request may have been written,
or an answer longer than ``max_body_bytes``
TLS failure                                :class:`PermanentApiError`
bad endpoint / region                      :class:`ConfigError`
=========================================  ===========================================

Everything a server sends is bounded, so that a broken or hostile one costs a failed call
and never the run: an answer body is read up to ``max_body_bytes`` (by its declared length
first, else while it streams in), a listing whose ``marker`` comes back to a page already
seen stops, and a ``Retry-After`` hint is capped at ``retry_after_cap_s``.

A server that reads a request and closes the connection without answering looks exactly
like one that applied it and then dropped: both are ``maybe_applied=True``. For a replicate
POST that means "outcome unknown": reconcile with :meth:`CsbsClient.find_replication`
before sending it again.

The client does not retry (that is :mod:`orchestrator.retry`'s job) and does not log: the
caller counts successes and logs failures.
"""

from __future__ import annotations

import email.utils
import enum
import math
import re
import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self, cast
from urllib.parse import quote

import aiohttp
import anyio
import orjson
import yarl

from orchestrator import __version__
from orchestrator.auth import Authenticator
from orchestrator.errors import (
    AlreadyReplicatedError,
    ApiError,
    AuthError,
    Classification,
    ConfigError,
    ErrorTable,
    PermanentApiError,
    TransientApiError,
    TransportError,
)
from orchestrator.models import PROVIDER_ID, ReplicationTask

__all__ = [
    "ClientSettings",
    "CsbsClient",
    "Timeouts",
    "error_for_response",
    "parse_error_body",
    "parse_retry_after",
]

_REGION = re.compile(r"[a-z]{2}(-[a-z0-9]+)+")
# Ids made of unreserved characters go into a path as they are; anything else is quoted.
_PLAIN_SEGMENT = re.compile(r"[A-Za-z0-9._~-]+")
_TAGS = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")
_SNIPPET = 200
#: The default cap on an answer's body (see ClientSettings.max_body_bytes).
_MAX_BODY = 64 << 20
_FAILED_RECORD = frozenset({"fail", "failed", "error"})
_JSON = "application/json"
_CLOSE_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class Timeouts:
    """aiohttp's ``ClientTimeout``, in seconds. ``total`` covers the whole call including any
    wait for a pooled connection, so keep the connector limits above the pool's own.

    ``read_s`` (no data for that long) applies to GETs, whose listing pages can be long. A
    POST's answer is a few hundred bytes that ``total_s`` already bounds, and a read timeout
    re-arms a timer on every chunk received: a cost per replicate request worth not paying.
    """

    total_s: float = 60.0
    connect_s: float = 10.0
    read_s: float = 30.0


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """How to reach CSBS. ``endpoint`` (a base URL) wins over ``region``; otherwise each call's
    source region, or ``region`` as the default, picks ``endpoint_template``."""

    endpoint: str | None = None
    region: str | None = None
    endpoint_template: str = "https://csbs.{region}.myhuaweicloud.com"
    timeouts: Timeouts = field(default_factory=Timeouts)
    limit: int = 256
    limit_per_host: int = 0
    """0: no per-host limit (the pool's limiters decide)."""
    verify_tls: bool = True
    ca_file: str | None = None
    error_table: ErrorTable = field(default_factory=ErrorTable)
    retry_after_cap_s: float = 60.0
    max_body_bytes: int = _MAX_BODY
    """An answer longer than this is not read (a listing page of 1000 items is ~2 MB)."""
    resolver: aiohttp.abc.AbstractResolver | None = field(default=None, compare=False)
    """Name resolution (None: aiohttp's default, cached 300 s); tests inject failing ones."""
    user_agent: str = f"csbs-orchestrator/{__version__}"

    def endpoint_for(self, region: str | None) -> str:
        """The base URL (no trailing ``/``) for calls whose source region is ``region``."""
        if self.endpoint:
            return _checked_base(self.endpoint)
        region = region or self.region
        if region is None:
            raise ConfigError("no CSBS endpoint: set an endpoint URL or a source region")
        if not _REGION.fullmatch(region):
            raise ConfigError(f"invalid region name {region!r}")
        return _checked_base(self.endpoint_template.format(region=region))


def _checked_base(url: str) -> str:
    try:
        parsed = yarl.URL(url)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"invalid endpoint URL {url!r}: {exc}") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigError(f"invalid endpoint URL {url!r}: need http(s)://host[:port]")
    if parsed.user or parsed.password:
        # Said without echoing the URL: it holds a credential.
        raise ConfigError("invalid endpoint URL: credentials in the URL are not supported")
    if parsed.query_string or parsed.fragment:
        raise ConfigError(f"invalid endpoint URL {url!r}: no query or fragment allowed")
    return str(parsed).rstrip("/")


class _State(enum.Enum):
    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"


class CsbsClient:
    """The CSBS v1 calls of one run. Use as ``async with CsbsClient(settings, auth) as c:``;
    a closed client cannot be reopened. ``auth=None`` sends no credentials (simulator)."""

    def __init__(
        self, settings: ClientSettings | None = None, auth: Authenticator | None = None
    ) -> None:
        self._settings = settings or ClientSettings()
        self._auth = auth
        self._session: aiohttp.ClientSession | None = None
        timeouts = self._settings.timeouts
        # GETs only (see Timeouts); every other call uses the session's, without sock_read.
        self._read_timeout = aiohttp.ClientTimeout(
            total=timeouts.total_s, sock_connect=timeouts.connect_s, sock_read=timeouts.read_s
        )
        self._state = _State.NEW
        # (source region, project) -> "https://host/v1/<project>": built once, then a lookup.
        self._prefixes: dict[tuple[str | None, str], str] = {}

    @property
    def settings(self) -> ClientSettings:
        return self._settings

    async def __aenter__(self) -> Self:
        if self._state is not _State.NEW:
            raise RuntimeError(f"a CsbsClient cannot be entered twice (it is {self._state.value})")
        settings = self._settings
        connector = aiohttp.TCPConnector(
            limit=settings.limit,
            limit_per_host=settings.limit_per_host,
            ttl_dns_cache=300,
            ssl=_ssl_setting(settings),
            resolver=settings.resolver,
        )
        timeout = aiohttp.ClientTimeout(
            total=settings.timeouts.total_s,
            sock_connect=settings.timeouts.connect_s,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            headers={"User-Agent": settings.user_agent},
            raise_for_status=False,
        )
        self._state = _State.OPEN
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._state = _State.CLOSED
        if self._session is not None:
            session, self._session = self._session, None
            # Closing must finish even when the run is being cancelled, but not hang it.
            with anyio.move_on_after(_CLOSE_TIMEOUT_S, shield=True):
                await session.close()

    # -- the calls ---------------------------------------------------------------------------

    async def replicate(self, task: ReplicationTask) -> str:
        """Start copying one item to its destination region; returns the replication record id.

        A ``TransportError`` with ``maybe_applied`` means the outcome is unknown: reconcile
        with :meth:`find_replication` before sending again.
        """
        replication: dict[str, Any] = {
            "destination_region": task.destination_region,
            "destination_project_id": task.destination_project_id,
        }
        if task.name is not None:
            replication["name"] = task.name
        if task.description is not None:
            replication["description"] = task.description
        if task.enable_acceleration is not None:
            replication["enable_acceleration"] = task.enable_acceleration
        path = (
            f"/providers/{PROVIDER_ID}/checkpoint_items/"
            f"{_segment(task.checkpoint_item_id)}/replicate"
        )
        data = await self._call(
            "POST",
            task.project_id,
            task.source_region,
            path,
            body=orjson.dumps({"replication": replication}),
        )
        try:
            record_id = orjson.loads(data)["replication"]["replication_record_id"]
        except (ValueError, KeyError, TypeError):
            record_id = None
        if not isinstance(record_id, str) or not record_id:
            # 200 means accepted, but without the id we cannot say what was accepted.
            exc = TransportError(
                "replicate answered 200 without a replication_record_id: outcome unknown",
                maybe_applied=True,
            )
            exc.http_status = 200
            raise exc
        return record_id

    async def get_item(
        self, project_id: str, item_id: str, *, region: str | None = None
    ) -> dict[str, Any]:
        data = await self._get_json(project_id, region, f"/checkpoint_items/{_segment(item_id)}")
        return cast("dict[str, Any]", _field(data, "checkpoint_item", dict))

    async def iter_items(
        self,
        project_id: str,
        *,
        region: str | None = None,
        page_size: int = 1000,
        **filters: str | int | bool,
    ) -> AsyncIterator[dict[str, Any]]:
        """Every item matching ``filters``, following ``marker`` until a short page."""
        if page_size < 1:
            raise ConfigError(f"page_size must be >= 1, not {page_size}")
        query = [(k, _query_value(v)) for k, v in filters.items()]
        query.append(("limit", str(page_size)))
        marker: str | None = None
        seen: set[str] = set()  # one marker per page: bounded by the listing's length
        while True:
            page_query = query if marker is None else [*query, ("marker", marker)]
            data = await self._get_json(project_id, region, "/checkpoint_items", page_query)
            page = _field(data, "checkpoint_items", list)
            for item in page:
                yield item
            if len(page) < page_size:
                return
            last = page[-1].get("id") if isinstance(page[-1], dict) else None
            if not isinstance(last, str) or last in seen:
                # The same marker again (at once or after other pages) would list the
                # same pages for ever.
                raise PermanentApiError(
                    "GET /checkpoint_items: paging did not advance (no new marker, or one "
                    f"already followed: {_snippet(last)!r}, after {len(seen) + 1} pages)"
                )
            seen.add(last)
            marker = last

    async def count_items(
        self, project_id: str, *, region: str | None = None, **filters: str | int | bool
    ) -> int:
        query = [(k, _query_value(v)) for k, v in filters.items()]
        data = await self._get_json(project_id, region, "/checkpoint_items/count", query)
        count = _field(data, "count", int)
        return int(count)

    async def replication_records(
        self,
        project_id: str,
        *,
        region: str | None = None,
        source_item_id: str | None = None,
        destination_region: str | None = None,
        status: str | None = None,
    ) -> list[dict[str, Any]]:
        query = [
            (name, value)
            for name, value in (
                ("source_checkpoint_item_id", source_item_id),
                ("destination_region", destination_region),
                ("status", status),
            )
            if value is not None
        ]
        data = await self._get_json(project_id, region, "/replication_records", query)
        return cast("list[dict[str, Any]]", _field(data, "replication_records", list))

    async def capabilities(
        self, project_id: str, *, region: str | None = None
    ) -> dict[str, list[str]]:
        """Source region -> the regions it may replicate to."""
        data = await self._get_json(project_id, region, "/replication_capabilities")
        result: dict[str, list[str]] = {}
        for entry in _field(data, "regions", list):
            if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                destinations = entry.get("replication_destinations") or []
                result[entry["name"]] = [d for d in destinations if isinstance(d, str)]
        return result

    async def find_replication(self, task: ReplicationTask) -> str | None:
        """The id of a replication of ``task.key`` that has not failed, or None.

        Asks the item first (its ``replication_records``), then ``/replication_records``;
        a 404 from the latter (the endpoint is unconfirmed on the real service) means "none".
        """
        item = await self.get_item(
            task.project_id, task.checkpoint_item_id, region=task.source_region
        )
        embedded = item.get("replication_records")
        if isinstance(embedded, list):
            found = _live_record(embedded, task)
            if found is not None:
                return found
        try:
            records = await self.replication_records(
                task.project_id,
                region=task.source_region,
                source_item_id=task.checkpoint_item_id,
                destination_region=task.destination_region,
            )
        except PermanentApiError as exc:
            if exc.http_status == 404:
                return None
            raise
        return _live_record(records, task)

    # -- the one request path ----------------------------------------------------------------

    async def _get_json(
        self,
        project_id: str,
        region: str | None,
        path: str,
        query: list[tuple[str, str]] | None = None,
    ) -> Any:
        data = await self._call("GET", project_id, region, path, query=query)
        try:
            return orjson.loads(data)
        except ValueError:
            raise _malformed("GET", path, data) from None

    async def _call(
        self,
        method: str,
        project_id: str,
        region: str | None,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: bytes | None = None,
    ) -> bytes:
        """Send one authenticated request; the 2xx body, or the mapped exception."""
        session = self._open_session()
        url_text = self._prefix(region, project_id) + path
        if query:
            url_text += "?" + "&".join(
                f"{quote(k, safe='~')}={quote(v, safe='~')}" for k, v in query
            )
        url = yarl.URL(url_text, encoded=True)
        renewed = False
        while True:
            headers = {"Content-Type": _JSON} if body is not None else {}
            if self._auth is not None:
                await self._auth.apply(
                    self._post_unauthenticated,
                    method=method,
                    url=url,
                    headers=headers,
                    body=body or b"",
                    project_id=project_id,
                )
            limits = self._read_timeout if method == "GET" else None
            status, data, answer_headers = await _send(
                session,
                method,
                url,
                headers,
                body,
                limits=limits,
                max_body=self._settings.max_body_bytes,
            )
            if status < 300:
                return data
            if (
                status == 401
                and not renewed
                and self._auth is not None
                and await self._auth.on_unauthorized(
                    self._post_unauthenticated, project_id, headers
                )
            ):
                renewed = True
                continue
            raise self._error(status, data, answer_headers, f"{method} {url.raw_path}")

    async def _post_unauthenticated(self, url: str, body: bytes) -> tuple[Mapping[str, str], bytes]:
        """For authenticators (IAM tokens): a JSON POST mapped like every other call."""
        try:
            target = yarl.URL(url)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"invalid URL {url!r}: {exc}") from exc
        headers = {"Content-Type": _JSON}
        status, data, answer_headers = await _send(
            self._open_session(),
            "POST",
            target,
            headers,
            body,
            max_body=self._settings.max_body_bytes,
        )
        if status < 300:
            return answer_headers, data
        raise self._error(status, data, answer_headers, f"POST {target.raw_path}")

    def _error(self, status: int, data: bytes, headers: Mapping[str, str], what: str) -> ApiError:
        return error_for_response(
            status,
            data,
            headers,
            table=self._settings.error_table,
            what=what,
            retry_after_cap_s=self._settings.retry_after_cap_s,
        )

    def _open_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError(f"the CsbsClient is not open (it is {self._state.value})")
        return self._session

    def _prefix(self, region: str | None, project_id: str) -> str:
        key = (region, project_id)
        prefix = self._prefixes.get(key)
        if prefix is None:
            base = self._settings.endpoint_for(region)
            prefix = self._prefixes[key] = f"{base}/v1/{_segment(project_id)}"
        return prefix


async def _send(
    session: aiohttp.ClientSession,
    method: str,
    url: yarl.URL,
    headers: dict[str, str],
    body: bytes | None,
    *,
    limits: aiohttp.ClientTimeout | None = None,
    max_body: int = _MAX_BODY,
) -> tuple[int, bytes, Mapping[str, str]]:
    """One HTTP exchange (``limits``: the session's timeouts when None). The only place
    aiohttp's exceptions are mapped."""
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
    return type(exc).__name__ + (f": {text[:_SNIPPET]}" if text else "")


def _ssl_setting(settings: ClientSettings) -> ssl.SSLContext | bool:
    if not settings.verify_tls:
        return False
    if settings.ca_file:
        return ssl.create_default_context(cafile=settings.ca_file)
    return True


def _segment(value: str) -> str:
    return value if _PLAIN_SEGMENT.fullmatch(value) else quote(value, safe="")


def _query_value(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _field(data: Any, name: str, kind: type[Any]) -> Any:
    value = data.get(name) if isinstance(data, dict) else None
    if isinstance(value, bool) or not isinstance(value, kind):
        raise TransientApiError(
            f"answer without a valid {name!r} field", http_status=200, error_msg=_snippet(data)
        )
    return value


def _malformed(method: str, path: str, data: bytes) -> TransientApiError:
    return TransientApiError(
        f"{method} {path}: 2xx answer is not JSON", http_status=200, error_msg=_snippet(data)
    )


def _live_record(records: list[Any], task: ReplicationTask) -> str | None:
    for record in records:
        if not isinstance(record, dict):
            continue
        if record.get("destination_region") != task.destination_region:
            continue
        source = record.get("source_checkpoint_item_id")
        if source is not None and source != task.checkpoint_item_id:
            continue
        status = record.get("status")
        if isinstance(status, str) and status.lower() in _FAILED_RECORD:
            continue
        record_id = record.get("id") or record.get("replication_record_id")
        if isinstance(record_id, str) and record_id:
            return record_id
    return None


# -- error answers ---------------------------------------------------------------------------


def _snippet(data: object) -> str:
    """A short, single-line, printable excerpt of an answer (HTML tags dropped)."""
    if isinstance(data, bytes | bytearray):
        text = bytes(data[: _SNIPPET * 8]).decode("utf-8", "replace")
    else:
        text = str(data)[: _SNIPPET * 8]
    text = _SPACE.sub(" ", _TAGS.sub(" ", text)).strip()
    text = "".join(ch for ch in text if ch.isprintable())
    return text[:_SNIPPET] + ("..." if len(text) > _SNIPPET else "")


_CODE_KEYS = (("error_code", "error_msg"), ("errorCode", "errorMsg"), ("code", "message"))


def _code_and_message(obj: Mapping[str, Any]) -> tuple[str | None, str | None]:
    for code_key, msg_key in _CODE_KEYS:
        code, msg = obj.get(code_key), obj.get(msg_key)
        if code is not None or msg is not None:
            return (
                None if code is None else _snippet(str(code)),
                None if msg is None else _snippet(str(msg)),
            )
    return None, None


def parse_error_body(data: bytes) -> tuple[str | None, str | None, str | None]:
    """``(error_code, error_msg, request_id)`` from an error answer of any known shape.

    Shapes: ``error_code/error_msg``, ``errorCode/errorMsg``, ``code/message``, any of these
    one level down (``{"error": {...}}``). A non-JSON answer yields its snippet as message.
    """
    try:
        parsed = orjson.loads(data)
    except ValueError:
        snippet = _snippet(data)
        return None, snippet or None, None
    if not isinstance(parsed, dict):
        return None, _snippet(parsed) or None, None
    request_id = parsed.get("request_id")
    code, msg = _code_and_message(parsed)
    if code is None and msg is None:
        for value in parsed.values():
            if isinstance(value, dict):
                code, msg = _code_and_message(value)
                if code is not None or msg is not None:
                    request_id = request_id or value.get("request_id")
                    break
    if code is None and msg is None:
        msg = _snippet(data) or None
    return code, msg, request_id if isinstance(request_id, str) else None


def parse_retry_after(
    value: str | None, *, cap_s: float, now: datetime | None = None
) -> float | None:
    """``Retry-After`` (delay-seconds or an HTTP date) as seconds in ``[0, cap_s]``."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), cap_s)


def error_for_response(
    status: int,
    data: bytes,
    headers: Mapping[str, str],
    *,
    table: ErrorTable,
    what: str,
    retry_after_cap_s: float = 60.0,
) -> ApiError:
    """The exception for one non-2xx answer (classified by ``table``)."""
    code, msg, body_request_id = parse_error_body(data)
    request_id = headers.get("X-Request-Id") or body_request_id
    text = f"{what}: HTTP {status}" + (f" {code}" if code else "") + (f": {msg}" if msg else "")
    if request_id:
        text += f" (request id {request_id})"
    fields: dict[str, Any] = {
        "http_status": status,
        "error_code": code,
        "error_msg": msg,
        "request_id": request_id,
    }
    kind = table.classify(status, code, msg)
    if kind is Classification.ALREADY_REPLICATED:
        return AlreadyReplicatedError(text, **fields)
    if kind is Classification.TRANSIENT:
        retry_after = parse_retry_after(headers.get("Retry-After"), cap_s=retry_after_cap_s)
        return TransientApiError(text, retry_after=retry_after, **fields)
    if kind is Classification.AUTH:
        return AuthError(f"credentials refused: {text}", **fields)
    return PermanentApiError(text, **fields)
