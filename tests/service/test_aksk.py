"""AK/SK signing against the official SDK's Signer, with and without a security token."""

from __future__ import annotations

import random
import string
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import orjson
import pytest
import yarl
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer.signer import Signer

from orchestrator.errors import ConfigError
from orchestrator.service.aksk import AkSkSigner
from orchestrator.service.auth import Secret

AK = "HPUAEXAMPLEAK0123456"
SK = "sk-Very-Secret-0123456789abcdefghij"
FIXED = datetime(2025, 3, 4, 5, 6, 7, 890000, tzinfo=UTC)
FIXED_SDK_DATE = "20250304T050607Z"


async def _no_post(url: str, body: bytes) -> tuple[Mapping[str, str], bytes]:
    raise AssertionError("no round trip expected")


# -- the signer against huaweicloudsdkcore ------------------------------------------------------


def _sdk_authorization(method: str, url: yarl.URL, headers: Mapping[str, str], body: bytes) -> str:
    """What huaweicloudsdkcore's Signer says for the request our client would send."""
    request = SdkRequest(
        method=method,
        schema=url.scheme,
        host=url.host_port_subcomponent,
        resource_path=url.raw_path,
        query_params=list(url.query.items()),
        header_params={**headers, "X-Sdk-Date": FIXED_SDK_DATE},
        body=body,
    )
    signed = Signer(BasicCredentials(AK, SK)).sign(request)
    return str(signed.header_params["Authorization"])


def _ours(method: str, url: yarl.URL, headers: Mapping[str, str], body: bytes) -> dict[str, str]:
    sent = dict(headers)
    AkSkSigner(AK, Secret(SK), clock=lambda: FIXED).sign(method, url, sent, body)
    return sent


_ALPHABET = string.ascii_letters + string.digits + "-_.~ %+/=&?#:@!$'()*,;中é"


def _text(rng: random.Random, low: int = 1, high: int = 12) -> str:
    return "".join(rng.choice(_ALPHABET) for _ in range(rng.randint(low, high)))


def _random_request(rng: random.Random) -> tuple[str, yarl.URL, dict[str, str], bytes]:
    """A request as the client builds it: encoded path and query, the headers it sends."""
    host = rng.choice(
        [
            "https://csbs.cn-north-1.myhuaweicloud.com",
            "https://csbs.cn-north-1.myhuaweicloud.com:8443",
            "http://127.0.0.1:43123",
            "http://localhost",
        ]
    )
    segments = [rng.choice(["v1", "providers", "checkpoint_items"]) for _ in range(2)]
    segments += [_text(rng) for _ in range(rng.randint(0, 3))]
    path = "/" + "/".join(quote(s, safe="") for s in segments)
    if rng.random() < 0.2:
        path += "/"
    pairs = [(_text(rng, 1, 6), _text(rng, 0, 8)) for _ in range(rng.randint(0, 4))]
    if pairs and rng.random() < 0.3:
        pairs.append((pairs[0][0], _text(rng, 0, 5)))  # a repeated key
    query = "&".join(f"{quote(k, safe='~')}={quote(v, safe='~')}" for k, v in pairs)
    url = yarl.URL(host + path + (f"?{query}" if query else ""), encoded=True)
    method = rng.choice(["GET", "POST", "PUT", "DELETE"])
    headers = {"X-Project-Id": _text(rng, 8, 32).strip() or "p"}
    body = b""
    if method != "GET":
        headers["Content-Type"] = "application/json"
        body = orjson.dumps({"replication": {"name": _text(rng, 0, 40)}})
    return method, url, headers, body


@pytest.mark.parametrize("seed", range(40))
def test_signature_matches_the_sdk_on_random_requests(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(10):
        method, url, headers, body = _random_request(rng)
        ours = _ours(method, url, headers, body)
        assert ours["Authorization"] == _sdk_authorization(method, url, headers, body), (
            method,
            str(url),
        )


@pytest.mark.parametrize(
    ("url", "expected_host"),
    [
        ("https://csbs.cn-north-1.myhuaweicloud.com/v1/p/checkpoint_items", None),
        ("https://csbs.cn-north-1.myhuaweicloud.com:443/v1/p/checkpoint_items", None),
        ("http://127.0.0.1:8080/v1/p/checkpoint_items?limit=10&marker=a", "127.0.0.1:8080"),
        ("http://[::1]:8080/v1/p/checkpoint_items", "[::1]:8080"),
    ],
)
def test_host_header_is_what_aiohttp_would_send(url: str, expected_host: str | None) -> None:
    parsed = yarl.URL(url, encoded=True)
    sent = _ours("GET", parsed, {"X-Project-Id": "p"}, b"")
    # aiohttp writes url.host_port_subcomponent unless Host is given: the same value.
    assert sent["Host"] == (expected_host or "csbs.cn-north-1.myhuaweicloud.com")
    assert sent["Host"] == parsed.host_port_subcomponent
    assert sent["X-Sdk-Date"] == FIXED_SDK_DATE
    assert sent["Authorization"] == _sdk_authorization("GET", parsed, {"X-Project-Id": "p"}, b"")


def test_replicate_request_signs_exactly_the_headers_sent() -> None:
    url = yarl.URL(
        "https://csbs.cn-north-1.myhuaweicloud.com/v1/0123abcd/providers/"
        "fc4d5750-22e7-4798-8a46-f48f62c4c1da/checkpoint_items/item-1/replicate",
        encoded=True,
    )
    body = b'{"replication":{"destination_region":"cn-east-2"}}'
    sent = _ours(
        "POST", url, {"Content-Type": "application/json", "X-Project-Id": "0123abcd"}, body
    )
    assert set(sent) == {"Content-Type", "X-Project-Id", "X-Sdk-Date", "Host", "Authorization"}
    assert "SignedHeaders=content-type;host;x-project-id;x-sdk-date," in sent["Authorization"]
    assert sent["Authorization"].startswith(f"SDK-HMAC-SHA256 Access={AK}, ")
    assert SK not in sent["Authorization"]


def test_explicit_host_and_underscore_headers_follow_the_sdk() -> None:
    url = yarl.URL("http://127.0.0.1:9000/v1/p/checkpoint_items/count?status=available")
    headers = {"host": "gateway.example:9000", "X_Custom_Trace": "abc", "X-Project-Id": "p"}
    sent = _ours("GET", url, headers, b"")
    assert "Host" not in sent  # the caller's host header is kept, not duplicated
    assert "x_custom_trace" not in sent["Authorization"]  # names with "_" are never signed
    assert sent["Authorization"] == _sdk_authorization("GET", url, headers, b"")


def test_date_follows_the_clock_across_seconds() -> None:
    moments = iter([FIXED, FIXED + timedelta(milliseconds=50), FIXED + timedelta(seconds=1)])
    signer = AkSkSigner(AK, Secret(SK), clock=lambda: next(moments))
    url = yarl.URL("https://h/v1/p")
    dates = []
    for _ in range(3):
        headers: dict[str, str] = {}
        signer.sign("GET", url, headers, b"")
        dates.append(headers["X-Sdk-Date"])
    assert dates == [FIXED_SDK_DATE, FIXED_SDK_DATE, "20250304T050608Z"]


@pytest.mark.anyio
async def test_apply_adds_the_project_and_never_asks_for_a_retry() -> None:
    signer = AkSkSigner(AK, Secret(SK), clock=lambda: FIXED)
    url = yarl.URL("https://h/v1/proj-1/checkpoint_items")
    headers: dict[str, str] = {}
    await signer.apply(
        _no_post, method="GET", url=url, headers=headers, body=b"", project_id="proj-1"
    )
    assert headers["X-Project-Id"] == "proj-1"
    assert headers["Authorization"] == _sdk_authorization(
        "GET", url, {"X-Project-Id": "proj-1"}, b""
    )
    assert await signer.on_unauthorized(_no_post, "proj-1", headers) is False
    assert SK not in repr(signer)


@pytest.mark.parametrize("ak", ["", "AK WITH SPACE", "AK,=x"])
def test_bad_access_keys_are_refused_without_echoing_them(ak: str) -> None:
    with pytest.raises(ConfigError) as caught:
        AkSkSigner(ak, Secret(SK))
    assert SK not in str(caught.value)


def test_empty_secret_key_is_refused() -> None:
    with pytest.raises(ConfigError, match="SK"):
        AkSkSigner(AK, Secret(""))


# -- temporary credentials: a security token (issue 15) ----------------------------------------

TOKEN = "sec-token-" + "Q" * 200  # real ones are long base64-ish strings


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/p1/providers/x/checkpoint_items/i-1/replicate", b'{"replication": {}}'),
        ("GET", "/v1/p1/checkpoint_items?limit=5&status=available", b""),
    ],
)
async def test_a_security_token_is_sent_and_signed_as_the_sdk_does(
    method: str, path: str, body: bytes
) -> None:
    url = yarl.URL("https://csbs.cn-north-4.myhuaweicloud.com" + path)
    headers = {"Content-Type": "application/json"}
    ours = dict(headers)
    signer = AkSkSigner(AK, Secret(SK), security_token=Secret(TOKEN), clock=lambda: FIXED)
    await signer.apply(_no_post, method=method, url=url, headers=ours, body=body, project_id="p1")

    request = SdkRequest(
        method=method,
        schema=url.scheme,
        host=url.host_port_subcomponent,
        resource_path=url.raw_path,
        query_params=list(url.query.items()),
        header_params={**headers, "X-Project-Id": "p1", "X-Sdk-Date": FIXED_SDK_DATE},
        body=body,
    )
    sdk = BasicCredentials(AK, SK).with_security_token(TOKEN).sign_request(request)
    assert ours["X-Security-Token"] == sdk.header_params["X-Security-Token"] == TOKEN
    assert "x-security-token" in ours["Authorization"].split("SignedHeaders=")[1]
    assert ours["Authorization"] == sdk.header_params["Authorization"]
    assert TOKEN not in repr(signer)
