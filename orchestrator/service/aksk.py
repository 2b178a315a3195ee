"""``SDK-HMAC-SHA256`` request signing with an AK/SK, byte-identical to huaweicloudsdkcore's
``Signer`` (the canonical request itself is :mod:`orchestrator.signing`, shared with the
simulator's check)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from datetime import datetime

import yarl

from orchestrator import signing
from orchestrator.errors import ConfigError
from orchestrator.service.auth import (
    PROJECT_HEADER,
    SECURITY_TOKEN_HEADER,
    PostJson,
    Secret,
    utcnow,
)

__all__ = ["AkSkSigner"]

_DATE_HEADER = "X-Sdk-Date"
# Paths and query parts made only of RFC 3986 unreserved characters (and '/') canonicalise to
# themselves; checking that is far cheaper than unquote + quote per segment (the hot path).
_PLAIN_PATH = re.compile(r"[A-Za-z0-9._~/-]*")
_PLAIN_QUERY = re.compile(r"[A-Za-z0-9._~=&-]*")
# An AK goes unquoted into the Authorization header: refuse anything that could break it.
_ACCESS_KEY = re.compile(r"[A-Za-z0-9]+")
_SHA256_BLOCK = 64
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


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
        clock: Callable[[], datetime] = utcnow,
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
        headers[PROJECT_HEADER] = project_id
        if self._token is not None:
            headers[SECURITY_TOKEN_HEADER] = self._token.reveal()
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
