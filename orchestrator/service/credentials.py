"""Where credentials come from: a chain of sources, like the official SDK's provider chain.

The first source that yields credentials wins (see ``docs/credentials.md``):

1. **environment**: ``HUAWEICLOUD_SDK_AK`` + ``HUAWEICLOUD_SDK_SK`` (with
   ``HUAWEICLOUD_SDK_SECURITY_TOKEN`` for a temporary key), or ``CSBS_AUTH_TOKEN``;
2. **IAM user** of the config file's ``[auth]`` with ``CSBS_IAM_PASSWORD``;
3. **profile file**: ``HUAWEICLOUD_SDK_CREDENTIALS_FILE``, else
   ``~/.huaweicloud/credentials``, section ``[basic]``: ``ak``, ``sk``, ``security_token``
   (the SDK's ``ProfileCredentialProvider`` format);
4. **ECS metadata**: ``GET http://169.254.169.254/openstack/latest/securitykey`` (an agency's
   temporary AK/SK/security token with ``expires_at``), tried with a one-second connect
   timeout so that a machine that is not an ECS fails fast. ``CSBS_METADATA_URL`` points it
   elsewhere (a private cloud, the simulator), or ``off`` skips it.

Metadata credentials expire: :class:`MetadataCredentials` renews them before ``expires_at``
(40 minutes ahead, as the SDK does, or a fifth of their life if that is shorter) and once
when a request using them gets a 401; renewals are single-flight. The source is logged by
name, never the values. When no source yields credentials, one :class:`ConfigError` lists
what was tried and why each failed.
"""

from __future__ import annotations

import configparser
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import aiohttp
import anyio
import orjson
import structlog
import yarl

from orchestrator.errors import AuthError, ConfigError
from orchestrator.service.aksk import AkSkSigner
from orchestrator.service.auth import Authenticator, PostJson, Secret, utcnow
from orchestrator.service.tokens import StaticToken

__all__ = [
    "METADATA_URL",
    "MetadataCredentials",
    "TemporaryKey",
    "credentials_from_env",
    "fetch_metadata_key",
    "resolve_credentials",
]

log = structlog.get_logger("orchestrator.credentials")

METADATA_URL: Final = "http://169.254.169.254/openstack/latest/securitykey"
METADATA_ENV: Final = "CSBS_METADATA_URL"
PROFILE_ENV: Final = "HUAWEICLOUD_SDK_CREDENTIALS_FILE"
_PROFILE_DEFAULT: Final = Path(".huaweicloud") / "credentials"
_PROFILE_SECTION: Final = "basic"
_CONNECT_TIMEOUT_S: Final = 1.0
_TOTAL_TIMEOUT_S: Final = 3.0
_REFRESH_BEFORE: Final = timedelta(minutes=40)  # huaweicloudsdkcore's expiration threshold
_MAX_BODY: Final = 64 * 1024
_TOKEN_PATH: Final = "/meta-data/latest/api/token"  # noqa: S105 - a path, not a secret
_TOKEN_HEADER: Final = "X-Metadata-Token"  # noqa: S105 - a header name
_TOKEN_TTL_S: Final = 6 * 3600  # as the SDK asks


class _Unavailable(Exception):
    """A source has no credentials to give; the message says why (never a secret)."""


@dataclass(frozen=True, slots=True)
class TemporaryKey:
    """A temporary AK/SK with its security token; ``expires_at`` None: not said."""

    ak: str
    sk: Secret
    token: Secret
    expires_at: datetime | None

    def signer(self) -> AkSkSigner:
        # Signed with the real clock: the gateway checks X-Sdk-Date against its own.
        return AkSkSigner(self.ak, self.sk, security_token=self.token)


FetchKey = Callable[[], Awaitable[TemporaryKey]]


async def fetch_metadata_key(
    url: str, *, connect_timeout_s: float = _CONNECT_TIMEOUT_S
) -> TemporaryKey:
    """Ask the metadata service at ``url`` for the instance's temporary key.

    As huaweicloudsdkcore's ``MetadataAccessor``: first a session token (``PUT
    /meta-data/latest/api/token``, which hardened images require), then the key with that
    token in ``X-Metadata-Token``; a service without tokens (404, 405) is asked without one.
    Nothing answering the first request ends it there: one connect timeout, not two.
    """
    timeout = aiohttp.ClientTimeout(total=_TOTAL_TIMEOUT_S, sock_connect=connect_timeout_s)
    try:
        target = yarl.URL(url)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            token = await _metadata_token(session, target.with_path(_TOKEN_PATH))
            headers = {_TOKEN_HEADER: token.reveal()} if token else {}
            async with session.get(target, headers=headers, allow_redirects=False) as resp:
                data = await resp.content.read(_MAX_BODY)
                status = resp.status
    except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
        raise _Unavailable(f"no answer ({type(exc).__name__})") from None
    if status != 200:
        # 404 on an ECS without an agency; the body may explain, but could echo anything.
        raise _Unavailable(f"HTTP {status}")
    return _parse_key(data)


async def _metadata_token(session: aiohttp.ClientSession, url: yarl.URL) -> Secret | None:
    """The metadata session token, or None where the service has none to give."""
    headers = {"X-Metadata-Token-Ttl-Seconds": str(_TOKEN_TTL_S)}
    async with session.put(url, headers=headers, allow_redirects=False) as resp:
        text = (await resp.content.read(4096)).decode("utf-8", "replace").strip()
        if resp.status == 200 and text:
            return Secret(text)
    return None


def _parse_key(data: bytes) -> TemporaryKey:
    """The SDK's reading: ``credential`` (or ``credentials``) with ``access``, ``secret``,
    ``securitytoken`` and ``expires_at`` (a few other spellings accepted, as it does)."""
    try:
        body = orjson.loads(data)
    except ValueError:
        raise _Unavailable("the answer is not JSON") from None
    inner: Any = (
        body.get("credential") or body.get("credentials") if isinstance(body, dict) else None
    )
    if not isinstance(inner, dict):
        raise _Unavailable("the answer has no 'credential' object")
    ak = _first(inner, "access", "accessKeyId", "access_key_id")
    sk = _first(inner, "secret", "secretAccessKey", "secret_access_key")
    token = _first(inner, "securitytoken", "securityToken", "security_token")
    if not (ak and sk and token):
        raise _Unavailable("the answer lacks access, secret or securitytoken")
    return TemporaryKey(ak, Secret(sk), Secret(token), _expiry(inner))


def _first(obj: Mapping[str, Any], *names: str) -> str | None:
    for name in names:
        value = obj.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _expiry(obj: Mapping[str, Any]) -> datetime | None:
    value = _first(obj, "expires_at", "expiration")
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class MetadataCredentials:
    """Temporary AK/SK from the metadata service, renewed before they expire and once on a
    401. Build it with :meth:`start` (the first fetch), which raises when there are none.

    ``clock`` decides when to renew (against ``expires_at``); signatures use the real clock.
    """

    def __init__(
        self,
        fetch: FetchKey,
        first: TemporaryKey,
        *,
        clock: Callable[[], datetime] = utcnow,
        refresh_before: timedelta = _REFRESH_BEFORE,
        default_lifetime: timedelta = timedelta(hours=1),
    ) -> None:
        self._fetch = fetch
        self._clock = clock
        self._refresh_before = refresh_before
        self._default_lifetime = default_lifetime
        self._lock = anyio.Lock()
        self._key = first
        self._signer = first.signer()
        self._refresh_at = self._refresh_time(first)

    @classmethod
    async def start(
        cls, fetch: FetchKey, *, clock: Callable[[], datetime] = utcnow
    ) -> MetadataCredentials:
        return cls(fetch, await fetch(), clock=clock)

    def __repr__(self) -> str:
        return f"MetadataCredentials(ak={self._key.ak!r}, sk=Secret('***'))"

    def _refresh_time(self, key: TemporaryKey) -> datetime:
        now = self._clock()
        if key.expires_at is None:
            return now + self._default_lifetime
        life = key.expires_at - now
        return key.expires_at - min(self._refresh_before, max(life, timedelta(0)) / 5)

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
        if self._clock() >= self._refresh_at:
            await self._renew(stale=self._key.ak, forced=False)
        await self._signer.apply(
            post, method=method, url=url, headers=headers, body=body, project_id=project_id
        )

    async def on_unauthorized(
        self, post: PostJson, project_id: str, used: Mapping[str, str]
    ) -> bool:
        used_ak = _access_of(used.get("Authorization", ""))
        await self._renew(stale=used_ak or self._key.ak, forced=True)
        return True

    async def _renew(self, *, stale: str, forced: bool) -> None:
        async with self._lock:
            if self._key.ak != stale:
                return  # another request renewed it while this one waited
            if not forced and self._clock() < self._refresh_at:
                return
            try:
                key = await self._fetch()
            except _Unavailable as exc:
                expired = self._key.expires_at is not None and self._clock() >= self._key.expires_at
                if forced or expired:
                    raise AuthError(
                        f"temporary credentials from the metadata service could not be renewed: "
                        f"{exc}"
                    ) from None
                log.warning("credentials.renew_failed", source="ecs-metadata", reason=str(exc))
                self._refresh_at = self._clock() + timedelta(seconds=30)  # try again soon
                return
            self._key = key
            self._signer = key.signer()
            self._refresh_at = self._refresh_time(key)
            log.info(
                "credentials.renewed",
                source="ecs-metadata",
                expires_at=key.expires_at.isoformat() if key.expires_at else None,
            )


def _access_of(authorization: str) -> str | None:
    marker = "Access="
    start = authorization.find(marker)
    if start < 0:
        return None
    return authorization[start + len(marker) :].split(",", 1)[0].strip() or None


# -- the chain -------------------------------------------------------------------------------


def _from_profile(env: Mapping[str, str]) -> Authenticator:
    named = env.get(PROFILE_ENV, "").strip()
    if named:
        path = Path(named)
    else:
        home = env.get("HOME") or os.path.expanduser("~")
        path = Path(home) / _PROFILE_DEFAULT
    parser = configparser.ConfigParser(interpolation=None)
    try:
        found = parser.read(path, encoding="utf-8")
    except (configparser.Error, OSError, UnicodeDecodeError) as exc:
        raise _Unavailable(f"{path}: unreadable ({type(exc).__name__})") from None
    if not found:
        raise _Unavailable(f"{path}: no such file")
    if not parser.has_section(_PROFILE_SECTION):
        raise _Unavailable(f"{path}: no [{_PROFILE_SECTION}] section")
    section = parser[_PROFILE_SECTION]
    ak, sk = section.get("ak", "").strip(), section.get("sk", "").strip()
    if not (ak and sk):
        raise _Unavailable(f"{path}: [{_PROFILE_SECTION}] lacks ak or sk")
    token = section.get("security_token", "").strip()
    try:
        return AkSkSigner(ak, Secret(sk), security_token=Secret(token) if token else None)
    except ConfigError as exc:
        raise ConfigError(f"{path}: [{_PROFILE_SECTION}]: {exc}") from None


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


async def resolve_credentials(
    env: Mapping[str, str],
    *,
    iam: Callable[[], Authenticator | None] = lambda: None,
    clock: Callable[[], datetime] = utcnow,
) -> Authenticator:
    """The first source of the chain that yields credentials (see the module docstring).

    ``iam`` builds the IAM password authenticator from the settings (None: not configured).
    A source that is *misconfigured* (half an AK/SK pair, say) is a :class:`ConfigError` at
    once; one that is merely absent lets the chain go on.
    """
    tried: list[str] = []
    found = credentials_from_env(env)
    if found is not None:
        return _chosen(found, "environment")
    tried.append("environment: neither HUAWEICLOUD_SDK_AK/SK nor CSBS_AUTH_TOKEN is set")
    found = iam()
    if found is not None:
        return _chosen(found, "iam-user")
    tried.append("IAM user: no [auth] user with CSBS_IAM_PASSWORD")
    try:
        return _chosen(_from_profile(env), "profile-file")
    except _Unavailable as exc:
        tried.append(f"profile file: {exc}")
    url = env.get(METADATA_ENV, "").strip() or METADATA_URL
    if url.lower() == "off":
        tried.append(f"ECS metadata: skipped ({METADATA_ENV}=off)")
    else:
        try:
            fetched = await MetadataCredentials.start(lambda: fetch_metadata_key(url), clock=clock)
            return _chosen(fetched, "ecs-metadata")
        except _Unavailable as exc:
            tried.append(f"ECS metadata {url}: {exc}")
    raise ConfigError(
        "no credentials found; tried, in order:\n  - "
        + "\n  - ".join(tried)
        + "\nSet HUAWEICLOUD_SDK_AK and HUAWEICLOUD_SDK_SK (and "
        "HUAWEICLOUD_SDK_SECURITY_TOKEN for a temporary key), or CSBS_AUTH_TOKEN; or run on "
        "an ECS with an agency; or try --simulate (see docs/credentials.md)"
    )


def _chosen(auth: Authenticator, source: str) -> Authenticator:
    log.info("credentials.source", source=source)
    return auth
