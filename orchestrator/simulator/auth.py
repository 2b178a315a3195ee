"""Who may call: IAM password tokens and ``SDK-HMAC-SHA256`` AK/SK signatures.

Signatures are recomputed with :mod:`orchestrator.signing` (the same functions the client
signs with, checked byte for byte against huaweicloudsdkcore's ``Signer`` in the tests).
Token expiry and the AK/SK lockout follow simulated time; the clock-skew check follows the
real wall clock, because the client stamps ``X-Sdk-Date`` from its own real clock.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from orchestrator import signing
from orchestrator.simulator.clock import Clock
from orchestrator.simulator.config import SimulatorConfig
from orchestrator.simulator.records import Project
from orchestrator.simulator.refusal import Refusal
from orchestrator.simulator.state import Estate
from orchestrator.simulator.views import format_time

__all__ = ["Authenticator", "IssuedToken"]

_IAM = "Incorrect IAM authentication information: "


def _unauthorized(reason: str, code: str = "APIGW.0301") -> Refusal:
    return Refusal(401, code, _IAM + reason)


def _iam_error(status: int, title: str, message: str) -> Refusal:
    body = {"error": {"code": status, "title": title, "message": message}}
    return Refusal(status, f"IAM.{status}", message, body=body)


@dataclass(frozen=True, slots=True)
class _Token:
    project_id: str
    expires_at: float


@dataclass(frozen=True, slots=True)
class _TemporaryKey:
    sk: str = field(repr=False)
    token: str = field(repr=False)
    expires_at: float


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A fresh token (the ``X-Subject-Token`` value) and its response body."""

    token: str
    body: dict[str, Any]

    def __repr__(self) -> str:
        return "IssuedToken(token=<redacted>)"


class Authenticator:
    """Checks every CSBS request according to ``config.auth``."""

    def __init__(
        self,
        config: SimulatorConfig,
        estate: Estate,
        clock: Clock,
        *,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._estate = estate
        self._clock = clock
        self._wall = wall
        self._tokens: dict[str, _Token] = {}
        self._failures: dict[str, int] = {}
        self._locked_until: dict[str, float] = {}
        self._revoked_keys: set[str] = set()
        self._temporary: dict[str, _TemporaryKey] = {}
        self._metadata_tokens: set[str] = set()

    # ---- IAM ----------------------------------------------------------------------

    def issue_token(self, body: bytes) -> IssuedToken:
        """``POST /v3/auth/tokens`` with the password method, scoped to a project."""
        try:
            request = orjson.loads(body)
            identity = request["auth"]["identity"]
            user = identity["password"]["user"]
            scope = request["auth"]["scope"]["project"]
        except (ValueError, KeyError, TypeError):
            raise _iam_error(400, "Bad Request", "The request body is malformed.") from None
        if not isinstance(user, dict) or not isinstance(scope, dict):
            raise _iam_error(400, "Bad Request", "The request body is malformed.")
        if "password" not in identity.get("methods", ()):
            raise _iam_error(400, "Bad Request", "Only the password method is supported.")
        domain = user.get("domain") or {}
        good = (
            user.get("name") == self._config.user
            and hmac.compare_digest(str(user.get("password", "")), self._config.password)
            and domain.get("name", self._config.domain) == self._config.domain
        )
        if not good:
            raise _iam_error(401, "Unauthorized", "The username or password is wrong.")
        project = self._scope_project(scope)
        if project is None:
            raise _iam_error(400, "Bad Request", "The project in the scope does not exist.")
        now = self._clock.now()
        token = "MIIsim" + secrets.token_urlsafe(48)
        expires_at = now + self._config.token_ttl_s
        self._tokens[token] = _Token(project.id, expires_at)
        return IssuedToken(token, self._token_body(project.id, project.region, now, expires_at))

    def _scope_project(self, scope: dict[str, Any]) -> Project | None:
        if "id" in scope:
            return self._estate.project(str(scope["id"]))
        # IAM also scopes by project *name*, which is the region name for default projects.
        return next((p for p in self._estate.projects if p.region == scope.get("name")), None)

    def _token_body(
        self, project_id: str, region: str, now: float, expires_at: float
    ) -> dict[str, Any]:
        domain = {"id": "0" * 32, "name": self._config.domain}
        return {
            "token": {
                "methods": ["password"],
                "issued_at": format_time(now) + "Z",
                "expires_at": format_time(expires_at) + "Z",
                "project": {"id": project_id, "name": region, "domain": domain},
                "user": {"id": "1" * 32, "name": self._config.user, "domain": domain},
                "roles": [{"id": "0", "name": "te_admin"}],
                "catalog": [],
            }
        }

    # ---- ECS metadata -------------------------------------------------------------

    def issue_metadata_token(self) -> str:
        """``PUT /meta-data/latest/api/token``: a session token for the metadata service."""
        token = "mdt-" + secrets.token_urlsafe(24)
        self._metadata_tokens.add(token)
        return token

    def issue_temporary_key(self, metadata_token: str | None = None) -> dict[str, Any]:
        """``GET /openstack/latest/securitykey``: a new temporary AK/SK and security token,
        valid for ``temp_key_ttl_s`` simulated seconds (the agency credentials of an ECS)."""
        if self._config.metadata_tokens == "required" and (
            metadata_token is None or metadata_token not in self._metadata_tokens
        ):
            raise Refusal(401, "", "a metadata session token (X-Metadata-Token) is required")
        now = self._clock.now()
        ak = "TMP" + secrets.token_hex(10).upper()
        key = _TemporaryKey(
            secrets.token_urlsafe(30),
            "sim-sts-" + secrets.token_urlsafe(96),
            now + self._config.temp_key_ttl_s,
        )
        self._temporary[ak] = key
        return {
            "credential": {
                "access": ak,
                "secret": key.sk,
                "securitytoken": key.token,
                "expires_at": format_time(key.expires_at) + "Z",
            }
        }

    def revoke_tokens(self, token: str | None = None) -> int:
        """Forget one token, or every token (as a password change does); returns how many."""
        if token is None:
            count = len(self._tokens)
            self._tokens.clear()
            return count
        return 1 if self._tokens.pop(token, None) else 0

    def revoke_key(self, access_key: str) -> None:
        self._revoked_keys.add(access_key)

    # ---- per request --------------------------------------------------------------

    def check(
        self,
        *,
        method: str,
        raw_path: str,
        query: Iterable[tuple[str, str]],
        headers: Mapping[str, str],
        body: bytes,
        project_id: str,
    ) -> None:
        """Raise the 401/403 :class:`Refusal` the gateway would answer, or return."""
        mode = self._config.auth
        if mode == "none":
            return
        token = headers.get("X-Auth-Token")
        if token is not None and mode in ("any", "token"):
            self._check_token(token, project_id)
            return
        authorization = headers.get("Authorization")
        if authorization is not None and mode in ("any", "aksk"):
            self._check_signature(
                authorization,
                method=method,
                raw_path=raw_path,
                query=query,
                headers=headers,
                body=body,
            )
            claimed = headers.get("X-Project-Id")
            if claimed is not None and claimed != project_id:
                raise Refusal(
                    403,
                    "APIGW.0306",
                    "API access denied: X-Project-Id is not the project in the path.",
                )
            return
        raise _unauthorized("x-auth-token not found")

    def _check_token(self, token: str, project_id: str) -> None:
        known = self._tokens.get(token)
        if known is None:
            raise _unauthorized("decrypt token fail")
        if self._clock.now() >= known.expires_at:
            raise _unauthorized(f"token expires, expires_at: {format_time(known.expires_at)}Z")
        if known.project_id != project_id:
            raise Refusal(
                403, "APIGW.0306", "API access denied: the token is scoped to another project."
            )

    def _check_signature(
        self,
        authorization: str,
        *,
        method: str,
        raw_path: str,
        query: Iterable[tuple[str, str]],
        headers: Mapping[str, str],
        body: bytes,
    ) -> None:
        parsed = signing.parse_authorization(authorization)
        if parsed is None:
            raise _unauthorized("verify aksk signature fail")
        access_key = parsed.access_key
        now = self._clock.now()
        secret_key = self._secret_of(access_key, headers, parsed.signed_headers, now)
        if self._locked_until.get(access_key, 0.0) > now:
            raise _unauthorized(
                f"verify aksk signature fail: the key is locked for "
                f"{self._config.lockout_s:.0f} s after {self._config.lockout_failures} "
                "failed signatures"
            )
        sdk_date = headers.get("X-Sdk-Date")
        if sdk_date is None or "x-sdk-date" not in parsed.signed_headers:
            raise _unauthorized("x-sdk-date not found or not signed")
        try:
            stamped = signing.parse_sdk_date(sdk_date).timestamp()
        except ValueError:
            raise _unauthorized("x-sdk-date is malformed") from None
        if abs(self._wall() - stamped) > self._config.max_clock_skew_s:
            raise Refusal(
                401,
                "APIGW.0303",
                "Incorrect app authentication information: the request time is more than "
                f"{self._config.max_clock_skew_s / 60:.0f} minutes away from the server time.",
            )
        text = signing.canonical_request(
            method,
            raw_path,
            query=query,
            headers=headers,
            signed=parsed.signed_headers,
            body=body,
        )
        expected = signing.signature(secret_key, sdk_date, text)
        if not hmac.compare_digest(expected, parsed.signature):
            self._fail(access_key, now)
            raise _unauthorized("verify aksk signature fail")
        self._failures.pop(access_key, None)

    def _secret_of(
        self, access_key: str, headers: Mapping[str, str], signed: Iterable[str], now: float
    ) -> str:
        """The SK of ``access_key``; a temporary key also needs its own security token, sent
        in ``X-Security-Token`` and signed, before it expires."""
        if access_key in self._revoked_keys:
            raise _unauthorized("ak not found or disabled")
        if access_key == self._config.ak:
            return self._config.sk
        temporary = self._temporary.get(access_key)
        if temporary is None:
            raise _unauthorized("ak not found or disabled")
        sent = headers.get("X-Security-Token")
        if sent is None or "x-security-token" not in signed:
            raise _unauthorized("x-security-token not found or not signed")
        if not hmac.compare_digest(sent, temporary.token):
            raise _unauthorized("the security token does not belong to this access key")
        if now >= temporary.expires_at:
            raise _unauthorized(
                f"the security token expired at {format_time(temporary.expires_at)}Z"
            )
        return temporary.sk

    def _fail(self, access_key: str, now: float) -> None:
        failures = self._failures.get(access_key, 0) + 1
        if failures >= self._config.lockout_failures:
            self._locked_until[access_key] = now + self._config.lockout_s
            failures = 0
        self._failures[access_key] = failures
