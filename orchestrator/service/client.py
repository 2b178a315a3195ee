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

The client does not retry (that is :mod:`orchestrator.engine.retry`'s job) and does not log: the
caller counts successes and logs failures.
"""

from __future__ import annotations

import email.utils
import enum
import math
import re
import ssl
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, ClassVar, NamedTuple, Self, cast
from urllib.parse import quote

import aiohttp
import anyio
import orjson
import yarl

from orchestrator import __version__
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
    throttle_window_s,
)
from orchestrator.models import PROVIDER_ID, ReplicationTask
from orchestrator.secret_set import MASK, SecretSet
from orchestrator.service.auth import Authenticator
from orchestrator.service.error_body import SNIPPET, parse_error_body
from orchestrator.service.error_body import snippet as _snippet
from orchestrator.service.records import RecordReader, live_record
from orchestrator.service.transport_policy import (
    check_endpoint,
    refuse_credentials_over_plain_http,
)

__all__ = [
    "ClientSettings",
    "CsbsClient",
    "FoundRecord",
    "Timeouts",
    "error_for_response",
    "parse_error_body",
    "parse_retry_after",
]

_REGION = re.compile(r"[a-z]{2}(-[a-z0-9]+)+")
# Ids made of unreserved characters go into a path as they are; anything else is quoted.
_PLAIN_SEGMENT = re.compile(r"[A-Za-z0-9._~-]+")
_SNIPPET = SNIPPET
_TAGS = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")
_REQUEST_ID_MAX = 100
# Headers that carry a credential: tokens are learnt as secrets; all are masked in answers.
_TOKEN_HEADERS = ("X-Auth-Token", "X-Security-Token")
_CREDENTIAL_HEADERS = (*_TOKEN_HEADERS, "Authorization")
#: The default cap on an answer's body (see ClientSettings.max_body_bytes).
_MAX_BODY = 64 << 20
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


class FoundRecord(NamedTuple):
    """A replication record found for a pair: its id and, when the service said, when it
    was created (epoch seconds on this machine's clock)."""

    record_id: str
    created_at: float | None


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """How to reach CSBS. Each call's source region (or ``region`` as the default) picks its
    base URL: ``endpoints[region]`` first (one endpoint per source region, as the real
    service has: private clouds, the simulator), else ``endpoint`` (one URL for every
    region), else ``endpoint_template``."""

    endpoint: str | None = None
    region: str | None = None
    endpoint_template: str = "https://csbs.{region}.myhuaweicloud.com"
    endpoints: Mapping[str, str] = field(default_factory=dict)
    timeouts: Timeouts = field(default_factory=Timeouts)
    limit: int = 256
    limit_per_host: int = 0
    """0: no per-host limit (the pool's limiters decide)."""
    verify_tls: bool = True
    ca_file: str | None = None
    """A PEM bundle of CA certificates to trust instead of the system store (a private CA)."""
    allow_plain_http: bool = False
    """``--insecure``: accept ``http://`` to a non-loopback host (no credential is sent there)."""
    error_table: ErrorTable = field(default_factory=ErrorTable)
    retry_after_cap_s: float = 60.0
    max_body_bytes: int = _MAX_BODY
    """An answer longer than this is not read (a listing page of 1000 items is ~2 MB)."""
    resolver: aiohttp.abc.AbstractResolver | None = field(default=None, compare=False)
    """Name resolution (None: aiohttp's default, cached 300 s); tests inject failing ones."""
    user_agent: str = f"csbs-orchestrator/{__version__}"

    def endpoint_for(self, region: str | None) -> str:
        """The base URL (no trailing ``/``) for calls whose source region is ``region``."""
        region = region or self.region
        if region is not None and region in self.endpoints:
            base = _checked_base(self.endpoints[region])
        elif self.endpoint:
            base = _checked_base(self.endpoint)
        else:
            if region is None:
                raise ConfigError("no CSBS endpoint: set an endpoint URL or a source region")
            if not _REGION.fullmatch(region):
                raise ConfigError(f"invalid region name {region!r}")
            base = _checked_base(self.endpoint_template.format(region=region))
        check_endpoint(base, insecure=self.allow_plain_http)
        return base


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
    if parsed.path not in ("", "/"):
        # Every call adds /v1/<project_id>/...: a path here doubles it and every pair would
        # end as a permanent 404.
        base = parsed.with_path("").with_query(None)
        raise ConfigError(
            f"invalid endpoint URL {url!r}: no path allowed; use {str(base).rstrip('/')} "
            "(the tool adds /v1/<project_id>/...)"
        )
    return str(parsed).rstrip("/")


class _State(enum.Enum):
    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"


class CsbsClient:
    """The CSBS v1 calls of one run. Use as ``async with CsbsClient(settings, auth) as c:``;
    a closed client cannot be reopened. ``auth=None`` sends no credentials (simulator)."""

    #: The path prefix after the host (``/v1/<project>``); the CBR client says ``v3``.
    api_version: ClassVar[str] = "v1"

    def __init__(
        self,
        settings: ClientSettings | None = None,
        auth: Authenticator | None = None,
        *,
        secrets: SecretSet | None = None,
    ) -> None:
        self._settings = settings or ClientSettings()
        self._auth = auth
        # Shared with the log redactor when given: tokens learnt here are scrubbed there too.
        self._secrets = secrets if secrets is not None else SecretSet()
        self._session: aiohttp.ClientSession | None = None
        timeouts = self._settings.timeouts
        # GETs only (see Timeouts); every other call uses the session's, without sock_read.
        self._read_timeout = aiohttp.ClientTimeout(
            total=timeouts.total_s, sock_connect=timeouts.connect_s, sock_read=timeouts.read_s
        )
        self._state = _State.NEW
        #: The service's clock minus this machine's, once an answer said (None before).
        self._clock_offset_s: float | None = None
        # (source region, project) -> "https://host/v1/<project>": built once, then a lookup.
        self._prefixes: dict[tuple[str | None, str], str] = {}
        self.records = RecordReader()

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
        return accepted_record_id(data)

    async def get_item(
        self, project_id: str, item_id: str, *, region: str | None = None
    ) -> dict[str, Any]:
        data = await self._get_json(project_id, region, f"/checkpoint_items/{_segment(item_id)}")
        return cast("dict[str, Any]", _field(data, "checkpoint_item", dict, self._secrets.scrub))

    async def iter_items(
        self,
        project_id: str,
        *,
        region: str | None = None,
        page_size: int = 1000,
        **filters: str | int | bool,
    ) -> AsyncIterator[dict[str, Any]]:
        """Every item matching ``filters``, following ``marker`` until a short page."""
        listing = self._paged(
            project_id,
            region,
            "/checkpoint_items",
            key="checkpoint_items",
            page_size=page_size,
            filters=filters,
        )
        async for item in listing:
            yield item

    async def _paged(
        self,
        project_id: str,
        region: str | None,
        path: str,
        *,
        key: str,
        page_size: int,
        filters: Mapping[str, str | int | bool],
    ) -> AsyncIterator[Any]:
        """The entries of ``key`` in every page of ``GET path``, following ``marker`` (the
        last entry's id) until a short page; CSBS's checkpoint items and CBR's backups alike."""
        if page_size < 1:
            raise ConfigError(f"page_size must be >= 1, not {page_size}")
        query = [(k, _query_value(v)) for k, v in filters.items()]
        query.append(("limit", str(page_size)))
        marker: str | None = None
        seen: set[str] = set()  # one marker per page: bounded by the listing's length
        while True:
            page_query = query if marker is None else [*query, ("marker", marker)]
            data = await self._get_json(project_id, region, path, page_query)
            page = _field(data, key, list, self._secrets.scrub)
            for entry in page:
                yield entry
            if len(page) < page_size:
                return
            last = page[-1].get("id") if isinstance(page[-1], dict) else None
            if not isinstance(last, str) or last in seen:
                # The same marker again (at once or after other pages) would list the
                # same pages for ever.
                raise PermanentApiError(
                    f"GET {path}: paging did not advance (no new marker, or one "
                    f"already followed: {_snippet(last)!r}, after {len(seen) + 1} pages)"
                )
            seen.add(last)
            marker = last

    async def count_items(
        self, project_id: str, *, region: str | None = None, **filters: str | int | bool
    ) -> int:
        query = [(k, _query_value(v)) for k, v in filters.items()]
        data = await self._get_json(project_id, region, "/checkpoint_items/count", query)
        count = _field(data, "count", int, self._secrets.scrub)
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
        return cast(
            "list[dict[str, Any]]", _field(data, "replication_records", list, self._secrets.scrub)
        )

    async def capabilities(
        self, project_id: str, *, region: str | None = None
    ) -> dict[str, list[str]]:
        """Source region -> the regions it may replicate to."""
        data = await self._get_json(project_id, region, "/replication_capabilities")
        result: dict[str, list[str]] = {}
        for entry in _field(data, "regions", list, self._secrets.scrub):
            if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                destinations = entry.get("replication_destinations") or []
                result[entry["name"]] = [d for d in destinations if isinstance(d, str)]
        return result

    async def find_replication(self, task: ReplicationTask) -> str | None:
        """The id of a replication of ``task.key`` that is running or succeeded, or None
        (failed and skipped records do not count: see :mod:`orchestrator.service.records`).

        Asks the item first (its ``replication_records``), then ``/replication_records``;
        a 404 from the latter (the endpoint is unconfirmed on the real service) means "none".
        """
        found = await self.find_replication_record(task)
        return None if found is None else found.record_id

    async def find_replication_record(self, task: ReplicationTask) -> FoundRecord | None:
        """:meth:`find_replication` with the record's creation time, on this machine's clock
        (the service's ``created_at`` shifted by the offset its ``Date`` headers show)."""
        item = await self.get_item(
            task.project_id, task.checkpoint_item_id, region=task.source_region
        )
        embedded = item.get("replication_records")
        if isinstance(embedded, list):
            found = self._found(self._live(embedded, task))
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
        return self._found(self._live(records, task))

    def _live(self, records: list[Any], task: ReplicationTask) -> Mapping[str, Any] | None:
        return live_record(
            records,
            self.records,
            item_id=task.checkpoint_item_id,
            destination_region=task.destination_region,
        )

    def _found(self, record: Mapping[str, Any] | None) -> FoundRecord | None:
        if record is None:
            return None
        created = _service_time(record.get("created_at"))
        if created is not None and self._clock_offset_s is not None:
            created -= self._clock_offset_s
        return FoundRecord(str(record.get("id") or record.get("replication_record_id")), created)

    def _note_clock(self, headers: Mapping[str, str]) -> None:
        """The service's clock minus ours, from an answer's ``Date`` (second resolution)."""
        value = headers.get("Date")
        if not value:
            return
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return
        if when.tzinfo is not None:
            self._clock_offset_s = when.timestamp() - time.time()

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
            raise _malformed("GET", path, data, self._secrets.scrub) from None

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
                self._learn(headers)
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
                if method == "GET":
                    self._note_clock(answer_headers)
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
            raise self._error(status, data, answer_headers, f"{method} {url.raw_path}", headers)

    def _learn(self, headers: Mapping[str, str]) -> None:
        """Tokens this request carries become known secrets before it is sent (an IAM token
        is learnt at run time): two lookups per request, a set insert once per token."""
        secrets = self._secrets
        for name in _TOKEN_HEADERS:
            value = headers.get(name)
            if value and value not in secrets:
                secrets.add(value)

    async def _post_unauthenticated(self, url: str, body: bytes) -> tuple[Mapping[str, str], bytes]:
        """For authenticators (IAM tokens): a JSON POST mapped like every other call."""
        try:
            target = yarl.URL(url)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"invalid URL {url!r}: {exc}") from exc
        # The body of an IAM token request holds the password.
        check_endpoint(url, insecure=self._settings.allow_plain_http, what="IAM endpoint")
        refuse_credentials_over_plain_http(target, "IAM token request to")
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

    def _error(
        self,
        status: int,
        data: bytes,
        headers: Mapping[str, str],
        what: str,
        used: Mapping[str, str] | None = None,
    ) -> ApiError:
        return error_for_response(
            status,
            data,
            headers,
            table=self._settings.error_table,
            what=what,
            retry_after_cap_s=self._settings.retry_after_cap_s,
            scrub=self._scrubber(used or {}),
        )

    def _scrubber(self, used: Mapping[str, str]) -> Callable[[str], str]:
        """Masks every known secret and this request's own credentials (a signature is new
        each time) in what the answer says: a server may echo them, and the message goes to
        the ledger, the logs and the terminal."""
        extra = [value for name in _CREDENTIAL_HEADERS if (value := used.get(name))]
        extra += [v.rsplit("Signature=", 1)[1] for v in extra if "Signature=" in v]
        secrets = self._secrets

        def scrub(text: str) -> str:
            # This request's whole headers first: they contain shorter known secrets (the AK).
            for value in extra:
                if value in text:
                    text = text.replace(value, MASK)
            return secrets.scrub(text)

        return scrub

    def _open_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError(f"the CsbsClient is not open (it is {self._state.value})")
        return self._session

    def _prefix(self, region: str | None, project_id: str) -> str:
        key = (region, project_id)
        prefix = self._prefixes.get(key)
        if prefix is None:
            base = self._settings.endpoint_for(region)
            if self._auth is not None:  # once per prefix: no cost on the request path
                refuse_credentials_over_plain_http(yarl.URL(base))
            prefix = self._prefixes[key] = f"{base}/{self.api_version}/{_segment(project_id)}"
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
        try:
            return ssl.create_default_context(cafile=settings.ca_file)
        except (OSError, ssl.SSLError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or exc
            raise ConfigError(
                f"--ca-file {settings.ca_file}: cannot load CA certificates ({reason}); "
                "give a PEM file of one or more CA certificates"
            ) from None
    return True


def _segment(value: str) -> str:
    return value if _PLAIN_SEGMENT.fullmatch(value) else quote(value, safe="")


def _query_value(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _field(data: Any, name: str, kind: type[Any], scrub: Callable[[str], str]) -> Any:
    """``data[name]`` if it is a ``kind``; else a transient error quoting the answer, with
    ``scrub`` masking any secret the server echoed in it."""
    value = data.get(name) if isinstance(data, dict) else None
    if isinstance(value, bool) or not isinstance(value, kind):
        raise TransientApiError(
            f"answer without a valid {name!r} field",
            http_status=200,
            error_msg=scrub(_snippet(data)),
        )
    return value


def _malformed(
    method: str, path: str, data: bytes, scrub: Callable[[str], str]
) -> TransientApiError:
    return TransientApiError(
        f"{method} {path}: 2xx answer is not JSON",
        http_status=200,
        error_msg=scrub(_snippet(data)),
    )


def _service_time(value: object) -> float | None:
    """A CSBS timestamp (UTC, no zone: ``2017-04-18T01:21:52.701973``) as epoch seconds."""
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


# -- error answers ---------------------------------------------------------------------------


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
    scrub: Callable[[str], str] | None = None,
) -> ApiError:
    """The exception for one non-2xx answer (classified by ``table``). ``scrub`` masks
    secrets in what the server said (code, message, request id) before anything keeps it."""
    code, msg, body_request_id = parse_error_body(data)
    request_id = headers.get("X-Request-Id") or body_request_id
    if request_id:
        # Echoed to the terminal, logs and ledger: printable, single-line, short.
        request_id = _snippet(request_id)[:_REQUEST_ID_MAX] or None
    if scrub is not None:
        code, msg, request_id = (None if t is None else scrub(t) for t in (code, msg, request_id))
    text = f"{what}: HTTP {status}" + (f" {code}" if code else "") + (f": {msg}" if msg else "")
    if request_id:
        text += f" (request id {request_id})"
    advice = table.advice(code)
    if advice:
        text += f": {advice}"
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
        window = throttle_window_s(code, msg) if status == 429 else None
        return TransientApiError(text, retry_after=retry_after, window_s=window, **fields)
    if kind is Classification.AUTH:
        return AuthError(f"credentials refused: {text}", **fields)
    return PermanentApiError(text, unrecognised=not table.knows(code, msg), **fields)


def accepted_record_id(data: bytes) -> str:
    """The ``replication_record_id`` of a replicate call's 200 (CSBS and CBR answer alike).

    200 means accepted, but without the id we cannot say what was accepted: the outcome is
    unknown, and the pair is reconciled before anything is sent again."""
    try:
        record_id = orjson.loads(data)["replication"]["replication_record_id"]
    except (ValueError, KeyError, TypeError):
        record_id = None
    if not isinstance(record_id, str) or not record_id:
        exc = TransportError(
            "replicate answered 200 without a replication_record_id: outcome unknown",
            maybe_applied=True,
        )
        exc.http_status = 200
        raise exc
    return record_id
