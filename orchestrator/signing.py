"""The ``SDK-HMAC-SHA256`` signature of Huawei Cloud's API gateway, as pure functions.

Both sides use it: the client's signer (:mod:`orchestrator.service.aksk`) and the simulator's
verifier. It reproduces huaweicloudsdkcore's ``Signer`` byte for byte (a test checks that).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import NamedTuple
from urllib.parse import quote, unquote

__all__ = [
    "ALGORITHM",
    "DATE_FORMAT",
    "ParsedAuthorization",
    "authorization_header",
    "canonical_query",
    "canonical_request",
    "canonical_uri",
    "format_sdk_date",
    "parse_authorization",
    "parse_sdk_date",
    "signature",
    "signed_header_names",
]

ALGORITHM = "SDK-HMAC-SHA256"
DATE_FORMAT = "%Y%m%dT%H%M%SZ"
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def format_sdk_date(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(DATE_FORMAT)


def parse_sdk_date(value: str) -> datetime:
    return datetime.strptime(value, DATE_FORMAT).replace(tzinfo=UTC)


def _encode(value: str) -> str:
    return quote(value, safe="~")


def canonical_uri(path: str) -> str:
    """Each segment of the (decoded) path percent-encoded, always ending in ``/``."""
    uri = "/".join(_encode(segment) for segment in unquote(path).split("/"))
    return uri if uri.endswith("/") else uri + "/"


def canonical_query(params: Iterable[tuple[str, str]]) -> str:
    """``k=v`` pairs sorted by key, then value; both percent-encoded."""
    return "&".join(f"{_encode(k)}={_encode(v)}" for k, v in sorted(params))


def signed_header_names(headers: Mapping[str, str]) -> list[str]:
    """The SDK signs every header whose name has no underscore, lowered and sorted."""
    return sorted(name.lower() for name in headers if "_" not in name)


def canonical_request(
    method: str,
    path: str,
    *,
    query: Iterable[tuple[str, str]],
    headers: Mapping[str, str],
    signed: list[str],
    body: bytes,
) -> str:
    lowered = {name.lower(): str(value).strip() for name, value in headers.items()}
    header_block = "".join(f"{name}:{lowered.get(name, '')}\n" for name in signed)
    # huaweicloudsdkcore signs a non-JSON body with "X-Sdk-Content-Sha256: UNSIGNED-PAYLOAD":
    # whatever that header says stands in for the body's hash (its Signer does the same).
    payload_hash = lowered.get("x-sdk-content-sha256") or (
        hashlib.sha256(body).hexdigest() if body else _EMPTY_SHA256
    )
    return "\n".join(
        (
            method.upper(),
            canonical_uri(path),
            canonical_query(query),
            header_block,
            ";".join(signed),
            payload_hash,
        )
    )


def signature(secret_key: str, sdk_date: str, request_text: str) -> str:
    digest = hashlib.sha256(request_text.encode()).hexdigest()
    string_to_sign = f"{ALGORITHM}\n{sdk_date}\n{digest}"
    return hmac.new(secret_key.encode(), string_to_sign.encode(), hashlib.sha256).hexdigest()


def authorization_header(access_key: str, signed: list[str], sig: str) -> str:
    return f"{ALGORITHM} Access={access_key}, SignedHeaders={';'.join(signed)}, Signature={sig}"


class ParsedAuthorization(NamedTuple):
    access_key: str
    signed_headers: list[str]
    signature: str


def parse_authorization(value: str) -> ParsedAuthorization | None:
    """Split an ``Authorization`` header; ``None`` when it is not ours or malformed."""
    algorithm, _, rest = value.partition(" ")
    if algorithm != ALGORITHM:
        return None
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, sep, val = part.strip().partition("=")
        if sep:
            fields[name] = val
    try:
        return ParsedAuthorization(
            fields["Access"], fields["SignedHeaders"].split(";"), fields["Signature"]
        )
    except KeyError:
        return None
