"""Credentials for CSBS calls: AK/SK request signing and IAM tokens, behind one protocol.

Every way to authenticate is an :class:`Authenticator`: the client hands it each request's
headers to complete (:meth:`~Authenticator.apply`) and asks it, once per request, whether a
401 is worth one more try (:meth:`~Authenticator.on_unauthorized`). Only a token that was
refreshed justifies that second try; a signed request refused once is refused for good (five
bad signatures lock the key for five minutes, so AK/SK never retries a 401).

This module knows no HTTP library: a token provider fetches through the ``post`` callable the
client passes in, so that the client stays the one place where responses become exceptions.
Secrets travel as :class:`Secret` and are revealed only where a header is written.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

import anyio
import orjson
import yarl

from orchestrator import signing
from orchestrator.errors import AuthError, ConfigError

__all__ = [
    "AkSkSigner",
    "Authenticator",
    "IamPasswordToken",
    "PostJson",
    "Secret",
    "StaticToken",
    "credentials_from_env",
]

#: ``post(url, body) -> (response headers, response body)`` for a 2xx answer; any other answer
#: or transport failure raises an :mod:`orchestrator.errors` exception. Supplied by the client.
PostJson = Callable[[str, bytes], Awaitable[tuple[Mapping[str, str], bytes]]]

_PROJECT_HEADER = "X-Project-Id"
_SECURITY_TOKEN_HEADER = "X-Security-Token"  # noqa: S105 - a header name, not a secret
_TOKEN_HEADER = "X-Auth-Token"  # noqa: S105 - a header name, not a secret
_DATE_HEADER = "X-Sdk-Date"
# Paths and query parts made only of RFC 3986 unreserved characters (and '/') canonicalise to
# themselves; checking that is far cheaper than unquote + quote per segment (the hot path).
_PLAIN_PATH = re.compile(r"[A-Za-z0-9._~/-]*")
_PLAIN_QUERY = re.compile(r"[A-Za-z0-9._~=&-]*")
# An AK goes unquoted into the Authorization header: refuse anything that could break it.
_ACCESS_KEY = re.compile(r"[A-Za-z0-9]+")
# A token goes into a header as it is: printable ASCII only (no CR/LF to split it).
_HEADER_SAFE = re.compile(r"[\x20-\x7e]+")
_SHA256_BLOCK = 64
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Secret:
    """A string that never shows itself in ``repr``, ``str``, f-strings, logs or tracebacks.

    Call :meth:`reveal` at the one place the value is really needed.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> tuple[object, ...]:
        # Pickling would write the value somewhere we do not control.
        raise TypeError("a Secret cannot be pickled")


class Authenticator(Protocol):
    """How the client authenticates a request. Implementations mutate ``headers`` in place."""

    async def apply(
        self,
        post: PostJson,
        *,
        method: str,
        url: yarl.URL,
        headers: dict[str, str],
        body: bytes,
        project_id: str,
    ) -> None:
        """Complete ``headers`` for this request; ``project_id`` is the path's project."""

    async def on_unauthorized(
        self, post: PostJson, project_id: str, used: Mapping[str, str]
    ) -> bool:
        """A 401 answered a request sent with ``used``. True: credentials were renewed, send the
        request once more (the client never asks twice for one request). False: final."""


class AkSkSigner:
    """``SDK-HMAC-SHA256`` request signing, byte-identical to huaweicloudsdkcore's ``Signer``.

    Signs every header present when :meth:`sign` runs (the SDK's rule: all names without
    ``_``), so the caller must put every header it wants signed in first and add or change
    none of them afterwards. ``Host`` is set here exactly as aiohttp would send it (port only
    when not the scheme's default), and an explicit ``Host`` is what aiohttp then sends.

    ``security_token``: temporary credentials (an agency, an ECS or CCE node's key) come with
    one; it goes into ``X-Security-Token`` *before* signing, so it is a signed header, as
    huaweicloudsdkcore's ``Credentials.sign_request`` does.
    """

    __slots__ = (
        "_ak",
        "_clock",
        "_date",
        "_date_second",
        "_inner",
        "_layouts",
        "_outer",
        "_token",
    )

    def __init__(
        self,
        ak: str,
        sk: Secret,
        *,
        security_token: Secret | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        if not _ACCESS_KEY.fullmatch(ak):
            raise ConfigError("the access key (AK) must be non-empty and alphanumeric")
        if not sk:
            raise ConfigError("the secret key (SK) is empty")
        self._ak = ak
        self._token = security_token if security_token else None
        # HMAC's two keyed SHA-256 states, made once: each signature copies them (RFC 2104),
        # which costs half of what hmac.digest pays to set the key up on every call.
        self._inner, self._outer = _hmac_states(sk.reveal().encode())
        self._clock = clock
        # The date string changes once a second; formatting it costs more than the HMAC.
        self._date_second = -1
        self._date = ""
        # Requests come with the same header names in the same order: sort them once per layout.
        self._layouts: dict[tuple[str, ...], tuple[str, tuple[tuple[str, str], ...]]] = {}

    def __repr__(self) -> str:
        token = ", security_token=Secret('***')" if self._token else ""
        return f"AkSkSigner(ak={self._ak!r}, sk=Secret('***'){token})"

    @property
    def access_key(self) -> str:
        """The AK (not a secret: it names the key, and every Authorization header shows it)."""
        return self._ak

    async def apply(
        self,
        post: PostJson,
        *,
        method: str,
        url: yarl.URL,
        headers: dict[str, str],
        body: bytes,
        project_id: str,
    ) -> None:
        headers[_PROJECT_HEADER] = project_id
        if self._token is not None:
            headers[_SECURITY_TOKEN_HEADER] = self._token.reveal()
        self.sign(method, url, headers, body)

    async def on_unauthorized(
        self, post: PostJson, project_id: str, used: Mapping[str, str]
    ) -> bool:
        # Nothing to renew, and every further bad signature brings the key closer to a lock.
        return False

    def sign(self, method: str, url: yarl.URL, headers: dict[str, str], body: bytes) -> None:
        """Add ``X-Sdk-Date``, ``Host`` (if missing) and ``Authorization`` to ``headers``."""
        date = self._sdk_date()
        headers[_DATE_HEADER] = date
        if "Host" not in headers and not any(k.lower() == "host" for k in headers):
            headers["Host"] = url.host_port_subcomponent or ""
        names = tuple(headers)
        layout = self._layouts.get(names)
        if layout is None:
            layout = self._layouts[names] = _header_layout(names)
        signed_names, order = layout
        header_block = "".join([f"{low}:{headers[name].strip()}\n" for low, name in order])
        request_text = "\n".join(
            (
                method.upper(),
                _canonical_uri(url.raw_path),
                _canonical_query(url),
                header_block,
                signed_names,
                hashlib.sha256(body).hexdigest(),
            )
        )
        string_to_sign = (
            f"{signing.ALGORITHM}\n{date}\n{hashlib.sha256(request_text.encode()).hexdigest()}"
        )
        inner = self._inner.copy()
        inner.update(string_to_sign.encode())
        outer = self._outer.copy()
        outer.update(inner.digest())
        headers["Authorization"] = (
            f"{signing.ALGORITHM} Access={self._ak}, SignedHeaders={signed_names}, "
            f"Signature={outer.hexdigest()}"
        )

    def _sdk_date(self) -> str:
        moment = self._clock()
        second = int(moment.timestamp())
        if second != self._date_second:
            self._date = signing.format_sdk_date(moment)
            self._date_second = second
        return self._date


def _hmac_states(key: bytes) -> tuple[hashlib._Hash, hashlib._Hash]:
    """SHA-256 with the inner and outer HMAC pads absorbed (RFC 2104, block size 64)."""
    if len(key) > _SHA256_BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_SHA256_BLOCK, b"\0")
    return (
        hashlib.sha256(key.translate(_IPAD)),
        hashlib.sha256(key.translate(_OPAD)),
    )


def _header_layout(names: tuple[str, ...]) -> tuple[str, tuple[tuple[str, str], ...]]:
    """The SDK's rule: every name without ``_``, lowered and sorted; with each one's key."""
    lowered = {name.lower(): name for name in names if "_" not in name}
    signed = sorted(lowered)
    return ";".join(signed), tuple((low, lowered[low]) for low in signed)


def _canonical_uri(raw_path: str) -> str:
    if _PLAIN_PATH.fullmatch(raw_path):
        return raw_path if raw_path.endswith("/") else raw_path + "/"
    return signing.canonical_uri(raw_path)


def _canonical_query(url: yarl.URL) -> str:
    raw = url.raw_query_string
    if not raw:
        return ""
    if _PLAIN_QUERY.fullmatch(raw):
        pairs = [part.split("=") for part in raw.split("&")]
        if all(len(pair) == 2 for pair in pairs):
            pairs.sort()  # by key, then value, as the decoded pairs sort (nothing to decode)
            return "&".join([f"{key}={value}" for key, value in pairs])
    return signing.canonical_query(url.query.items())


class StaticToken:
    """A token obtained elsewhere (``CSBS_AUTH_TOKEN``). It cannot be renewed: a 401 is final."""

    __slots__ = ("_token",)

    def __init__(self, token: Secret) -> None:
        if not token:
            raise ConfigError("the auth token is empty")
        if not _HEADER_SAFE.fullmatch(token.reveal()):
            # CR/LF would split the header (aiohttp refuses it mid-run as a bare ValueError).
            raise ConfigError(
                "the auth token holds a line break, control or non-ASCII character: "
                "check CSBS_AUTH_TOKEN (a stray CR/LF from a file or a copy and paste?)"
            )
        self._token = token

    def __repr__(self) -> str:
        return "StaticToken(Secret('***'))"

    async def apply(
        self,
        post: PostJson,
        *,
        method: str,
        url: yarl.URL,
        headers: dict[str, str],
        body: bytes,
        project_id: str,
    ) -> None:
        headers[_TOKEN_HEADER] = self._token.reveal()
        headers[_PROJECT_HEADER] = project_id

    async def on_unauthorized(
        self, post: PostJson, project_id: str, used: Mapping[str, str]
    ) -> bool:
        return False


@dataclass(frozen=True, slots=True)
class _Token:
    value: Secret
    refresh_at: datetime


class IamPasswordToken:
    """IAM password tokens, one per project (a token is scoped to the project in the path).

    A token is fetched on first use, renewed shortly before it expires, and renewed once when a
    request using it gets a 401. Renewals are single-flight per project: a hundred workers
    hitting a revoked token cause one ``POST /v3/auth/tokens``, and the others reuse its result.
    """

    def __init__(
        self,
        iam_url: str,
        user: str,
        password: Secret,
        domain: str,
        *,
        clock: Callable[[], datetime] = _utcnow,
        refresh_before_s: float = 300.0,
        default_lifetime_s: float = 3600.0,
    ) -> None:
        if not (iam_url and user and password and domain):
            raise ConfigError("IAM token auth needs the IAM URL, user, password and domain")
        self._url = iam_url.rstrip("/") + "/v3/auth/tokens"
        self._user = user
        self._password = password
        self._domain = domain
        self._clock = clock
        self._refresh_before = timedelta(seconds=refresh_before_s)
        # Used when IAM's answer has no readable expiry: renew conservatively.
        self._default_lifetime = timedelta(seconds=default_lifetime_s)
        self._tokens: dict[str, _Token] = {}
        self._locks: dict[str, anyio.Lock] = {}
        # A refused password stays refused for this run: asking IAM again for each waiting
        # worker would only bring the user closer to IAM's own lockout.
        self._refused: AuthError | None = None

    def __repr__(self) -> str:
        return f"IamPasswordToken(url={self._url!r}, user={self._user!r}, password=Secret('***'))"

    async def apply(
        self,
        post: PostJson,
        *,
        method: str,
        url: yarl.URL,
        headers: dict[str, str],
        body: bytes,
        project_id: str,
    ) -> None:
        token = self._tokens.get(project_id)
        if token is None or self._clock() >= token.refresh_at:
            token = await self._renew(post, project_id, stale=token.value if token else None)
        headers[_TOKEN_HEADER] = token.value.reveal()
        headers[_PROJECT_HEADER] = project_id

    async def on_unauthorized(
        self, post: PostJson, project_id: str, used: Mapping[str, str]
    ) -> bool:
        used_value = used.get(_TOKEN_HEADER)
        await self._renew(post, project_id, stale=Secret(used_value) if used_value else None)
        return True

    async def _renew(self, post: PostJson, project_id: str, *, stale: Secret | None) -> _Token:
        lock = self._locks.setdefault(project_id, anyio.Lock())
        async with lock:
            current = self._tokens.get(project_id)
            if (
                current is not None
                and (stale is None or current.value.reveal() != stale.reveal())
                and self._clock() < current.refresh_at
            ):
                return current  # renewed by another worker while this one waited
            if self._refused is not None:
                raise self._refused
            try:
                token = await self._fetch(post, project_id)
            except AuthError as exc:
                self._refused = exc
                raise
            self._tokens[project_id] = token
            return token

    async def _fetch(self, post: PostJson, project_id: str) -> _Token:
        fetched_at = self._clock()
        headers, body = await post(self._url, self._request_body(project_id))
        value = headers.get("X-Subject-Token")
        if not value:
            raise AuthError("credentials refused: IAM answered without an X-Subject-Token header")
        if not _HEADER_SAFE.fullmatch(value):
            raise AuthError("IAM answered a token that no header can carry (control characters)")
        lifetime = _lifetime(body) or self._default_lifetime
        margin = min(self._refresh_before, lifetime / 5)
        return _Token(Secret(value), fetched_at + lifetime - margin)

    def _request_body(self, project_id: str) -> bytes:
        user = {
            "name": self._user,
            "password": self._password.reveal(),
            "domain": {"name": self._domain},
        }
        return orjson.dumps(
            {
                "auth": {
                    "identity": {"methods": ["password"], "password": {"user": user}},
                    "scope": {"project": {"id": project_id}},
                }
            }
        )


def _lifetime(body: bytes) -> timedelta | None:
    """How long IAM says the token lives: ``expires_at - issued_at``, both from IAM's clock,
    so that a skew between IAM's clock and ours cannot shorten or stretch it."""
    try:
        token = orjson.loads(body)["token"]
        lifetime = _parse_time(token["expires_at"]) - _parse_time(token["issued_at"])
    except (ValueError, KeyError, TypeError):
        return None
    return lifetime if lifetime > timedelta(0) else None


def _parse_time(value: str) -> datetime:
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def credentials_from_env(env: Mapping[str, str]) -> Authenticator | None:
    """The authenticator the environment asks for, or ``None`` when it names none.

    ``HUAWEICLOUD_SDK_AK`` + ``HUAWEICLOUD_SDK_SK`` (the SDKs' convention) sign requests, with
    ``HUAWEICLOUD_SDK_SECURITY_TOKEN`` for temporary keys (sent as ``X-Security-Token``);
    ``CSBS_AUTH_TOKEN`` is a ready token. Exactly one of the two may be set. (IAM password
    tokens come from the run settings: build :class:`IamPasswordToken` there.) Messages name
    variables, never their values.
    """
    ak = env.get("HUAWEICLOUD_SDK_AK", "").strip()
    sk = env.get("HUAWEICLOUD_SDK_SK", "").strip()
    token = env.get("CSBS_AUTH_TOKEN", "").strip()
    security_token = env.get("HUAWEICLOUD_SDK_SECURITY_TOKEN", "").strip()
    if security_token and not ak:
        raise ConfigError(
            "HUAWEICLOUD_SDK_SECURITY_TOKEN is set without HUAWEICLOUD_SDK_AK and "
            "HUAWEICLOUD_SDK_SK: a security token belongs to a temporary AK/SK; set all three"
        )
    if ak and not sk:
        raise ConfigError("HUAWEICLOUD_SDK_AK is set but HUAWEICLOUD_SDK_SK is not: set both")
    if sk and not ak:
        raise ConfigError("HUAWEICLOUD_SDK_SK is set but HUAWEICLOUD_SDK_AK is not: set both")
    if ak and token:
        raise ConfigError(
            "both HUAWEICLOUD_SDK_AK/SK and CSBS_AUTH_TOKEN are set: keep one way to authenticate"
        )
    if ak:
        return AkSkSigner(
            ak, Secret(sk), security_token=Secret(security_token) if security_token else None
        )
    if token:
        return StaticToken(Secret(token))
    return None
