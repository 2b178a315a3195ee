"""Token authenticators: a ready token (``CSBS_AUTH_TOKEN``), which cannot be renewed, and IAM
password tokens, one per project, renewed before they expire and once on a 401."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import anyio
import orjson
import yarl

from orchestrator.errors import AuthError, ConfigError, PermanentApiError
from orchestrator.service.auth import (
    HEADER_SAFE,
    PROJECT_HEADER,
    TOKEN_HEADER,
    PostJson,
    Secret,
    utcnow,
)

__all__ = ["IamPasswordToken", "StaticToken"]


class StaticToken:
    """A token obtained elsewhere (``CSBS_AUTH_TOKEN``). It cannot be renewed: a 401 is final."""

    __slots__ = ("_token",)

    def __init__(self, token: Secret) -> None:
        if not token:
            raise ConfigError("the auth token is empty")
        if not HEADER_SAFE.fullmatch(token.reveal()):
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
        headers[TOKEN_HEADER] = self._token.reveal()
        headers[PROJECT_HEADER] = project_id

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
        clock: Callable[[], datetime] = utcnow,
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
        headers[TOKEN_HEADER] = token.value.reveal()
        headers[PROJECT_HEADER] = project_id

    async def on_unauthorized(
        self, post: PostJson, project_id: str, used: Mapping[str, str]
    ) -> bool:
        used_value = used.get(TOKEN_HEADER)
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
        try:
            headers, body = await post(self._url, self._request_body(project_id))
        except PermanentApiError as exc:
            if exc.http_status != 404:
                raise
            # No token API at that URL: the IAM endpoint is wrong (often a ``/v3`` too many),
            # not the CSBS one that the caller's 404 advice would otherwise point at.
            raise ConfigError(
                f"IAM has no token API there ({exc}): check --iam-endpoint (or [auth] "
                "iam_endpoint): the IAM base URL without a path, e.g. "
                "https://iam.cn-north-1.myhuaweicloud.com (the tool adds /v3/auth/tokens)"
            ) from None
        value = headers.get("X-Subject-Token")
        if not value:
            raise AuthError("credentials refused: IAM answered without an X-Subject-Token header")
        if not HEADER_SAFE.fullmatch(value):
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
