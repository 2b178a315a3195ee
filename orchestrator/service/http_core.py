"""The request path both service clients share: one aiohttp session per run, credentials,
one token renewal on a 401, secrets scrubbed from what answers say, the service's clock, and
the paging of a listing by ``marker``.

:class:`HttpCore`'s calls return the 2xx body or raise only :mod:`orchestrator.errors`
exceptions: an error answer as :mod:`orchestrator.service.classify` says (401 only after one
token renewal), a failed exchange as :mod:`orchestrator.service.transport` says, a bad endpoint
or region as :class:`ConfigError`. Everything a server sends is bounded: the body's size
(:mod:`~orchestrator.service.transport`), a listing whose ``marker`` comes back to a page
already seen (it stops), a ``Retry-After`` hint (capped at ``retry_after_cap_s``).

A server that reads a request and closes the connection without answering looks exactly like
one that applied it and then dropped: both are ``maybe_applied=True``. For a replicate POST
that means "outcome unknown": reconcile before sending it again.

It does not retry (that is :mod:`orchestrator.engine.retry`'s job) and does not log: the
caller counts successes and logs failures. The CSBS calls are
:class:`~orchestrator.service.client.CsbsClient`'s, the CBR ones
:class:`~orchestrator.service.cbr.CbrClient`'s.
"""

from __future__ import annotations

import email.utils
import enum
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping
from types import TracebackType
from typing import Any, ClassVar, Self
from urllib.parse import quote

import aiohttp
import anyio
import orjson
import yarl

from orchestrator.errors import ApiError, ConfigError, PermanentApiError
from orchestrator.secret_set import MASK, SecretSet
from orchestrator.service.answer import not_json, required_field
from orchestrator.service.auth import Authenticator
from orchestrator.service.classify import error_for_response
from orchestrator.service.error_body import snippet
from orchestrator.service.records import RecordReader
from orchestrator.service.settings import ClientSettings
from orchestrator.service.transport import send, ssl_setting
from orchestrator.service.transport_policy import (
    check_endpoint,
    refuse_credentials_over_plain_http,
)

__all__ = ["HttpCore", "query_value", "segment"]

# Ids made of unreserved characters go into a path as they are; anything else is quoted.
_PLAIN_SEGMENT = re.compile(r"[A-Za-z0-9._~-]+")
# Headers that carry a credential: tokens are learnt as secrets; all are masked in answers.
_TOKEN_HEADERS = ("X-Auth-Token", "X-Security-Token")
_CREDENTIAL_HEADERS = (*_TOKEN_HEADERS, "Authorization")
_JSON = "application/json"
_CLOSE_TIMEOUT_S = 5.0


class _State(enum.Enum):
    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"


class HttpCore:
    """The session and request path of one run. Use a subclass as ``async with Client(settings,
    auth) as c:``; a closed client cannot be reopened. ``auth=None`` sends no credentials
    (simulator)."""

    #: The path prefix after the host (``/v1/<project>`` for CSBS, ``/v3/...`` for CBR).
    api_version: ClassVar[str]

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
            raise RuntimeError(
                f"a {type(self).__name__} cannot be entered twice (it is {self._state.value})"
            )
        settings = self._settings
        connector = aiohttp.TCPConnector(
            limit=settings.limit,
            limit_per_host=settings.limit_per_host,
            ttl_dns_cache=300,
            ssl=ssl_setting(settings),
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

    # -- reading answers ---------------------------------------------------------------------

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
            raise not_json("GET", path, data, self._secrets.scrub) from None

    def _field(self, data: Any, name: str, kind: type[Any]) -> Any:
        """``data[name]`` if it is a ``kind``; else a transient error quoting the scrubbed
        answer."""
        return required_field(data, name, kind, self._secrets.scrub)

    async def _paged(
        self,
        project_id: str,
        region: str | None,
        path: str,
        *,
        key: str,
        page_size: int,
        filters: Mapping[str, str | int | bool],
        marker: str | None = None,
    ) -> AsyncIterator[Any]:
        """The entries of ``key`` in every page of ``GET path``, following ``marker`` (the
        last entry's id) until a short page; CSBS's checkpoint items and CBR's backups alike.
        A ``marker`` given starts after that entry: the page a failed listing was asking for,
        asked again exactly as it was."""
        if page_size < 1:
            raise ConfigError(f"page_size must be >= 1, not {page_size}")
        query = [(k, query_value(v)) for k, v in filters.items()]
        query.append(("limit", str(page_size)))
        # One marker per page: bounded by the listing's length.
        seen: set[str] = set() if marker is None else {marker}
        while True:
            page_query = query if marker is None else [*query, ("marker", marker)]
            data = await self._get_json(project_id, region, path, page_query)
            page = self._field(data, key, list)
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
                    f"already followed: {snippet(last)!r}, after {len(seen) + 1} pages)"
                )
            seen.add(last)
            marker = last

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
            status, data, answer_headers = await send(
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
        status, data, answer_headers = await send(
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
            raise RuntimeError(f"the {type(self).__name__} is not open (it is {self._state.value})")
        return self._session

    def _prefix(self, region: str | None, project_id: str) -> str:
        key = (region, project_id)
        prefix = self._prefixes.get(key)
        if prefix is None:
            base = self._settings.endpoint_for(region)
            if self._auth is not None:  # once per prefix: no cost on the request path
                refuse_credentials_over_plain_http(yarl.URL(base))
            prefix = self._prefixes[key] = f"{base}/{self.api_version}/{segment(project_id)}"
        return prefix


def segment(value: str) -> str:
    """An id as one path segment: as it is when made of unreserved characters, else quoted."""
    return value if _PLAIN_SEGMENT.fullmatch(value) else quote(value, safe="")


def query_value(value: str | int | bool) -> str:
    """A filter's value as the services read it (booleans in lower case)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
