"""AK/SK signing against the official SDK's Signer, token providers, credentials from env."""

from __future__ import annotations

import pickle
import random
import string
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import anyio
import anyio.lowlevel
import orjson
import pytest
import yarl
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer.signer import Signer

from orchestrator.errors import AuthError, ConfigError
from orchestrator.service.auth import (
    AkSkSigner,
    IamPasswordToken,
    Secret,
    StaticToken,
    credentials_from_env,
)

AK = "HPUAEXAMPLEAK0123456"
SK = "sk-Very-Secret-0123456789abcdefghij"
PASSWORD = "p4ssw0rd-Do-Not-Leak"
FIXED = datetime(2025, 3, 4, 5, 6, 7, 890000, tzinfo=UTC)
FIXED_SDK_DATE = "20250304T050607Z"


async def _no_post(url: str, body: bytes) -> tuple[Mapping[str, str], bytes]:
    raise AssertionError("no round trip expected")


# -- Secret -----------------------------------------------------------------------------------


def test_secret_never_shows_its_value() -> None:
    secret = Secret(SK)
    assert secret.reveal() == SK
    for text in (repr(secret), str(secret), f"{secret}", f"{secret!r}", repr([secret])):
        assert SK not in text
        assert "***" in text
    assert bool(secret)
    assert not Secret("")
    with pytest.raises(TypeError):
        pickle.dumps(secret)


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


# -- tokens -----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_static_token_is_sent_and_cannot_be_renewed() -> None:
    auth = StaticToken(Secret("tok-123"))
    headers: dict[str, str] = {}
    url = yarl.URL("https://h/v1/p")
    await auth.apply(_no_post, method="GET", url=url, headers=headers, body=b"", project_id="p")
    assert headers == {"X-Auth-Token": "tok-123", "X-Project-Id": "p"}
    assert await auth.on_unauthorized(_no_post, "p", headers) is False
    assert "tok-123" not in repr(auth)


class FakeIam:
    """A stand-in for the client's ``post``: counts fetches, hands out numbered tokens."""

    def __init__(self, *, lifetime_s: float = 3600.0, fail: BaseException | None = None) -> None:
        self.calls: list[tuple[str, dict[str, object]]] = []
        self.lifetime_s = lifetime_s
        self.fail = fail

    async def __call__(self, url: str, body: bytes) -> tuple[Mapping[str, str], bytes]:
        await anyio.lowlevel.checkpoint()  # let concurrent callers interleave, as a round trip
        self.calls.append((url, orjson.loads(body)))
        if self.fail is not None:
            raise self.fail
        issued = datetime(2030, 1, 1, tzinfo=UTC)  # IAM's clock need not be ours
        expires = issued + timedelta(seconds=self.lifetime_s)
        answer = {
            "token": {
                "issued_at": issued.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "expires_at": expires.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            }
        }
        return {"X-Subject-Token": f"token-{len(self.calls)}"}, orjson.dumps(answer)


class FakeClock:
    def __init__(self) -> None:
        self.now = FIXED

    def __call__(self) -> datetime:
        return self.now


def _iam(clock: FakeClock | None = None, **kw: float) -> IamPasswordToken:
    return IamPasswordToken(
        "https://iam.example/",
        "alice",
        Secret(PASSWORD),
        "acme",
        clock=clock or FakeClock(),
        **kw,
    )


async def _apply(auth: IamPasswordToken, post: FakeIam, project: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    url = yarl.URL(f"https://h/v1/{project}")
    await auth.apply(post, method="GET", url=url, headers=headers, body=b"", project_id=project)
    return headers


@pytest.mark.anyio
async def test_iam_token_is_fetched_once_per_project_with_a_scoped_password_body() -> None:
    iam, auth = FakeIam(), _iam()
    assert (await _apply(auth, iam, "p1"))["X-Auth-Token"] == "token-1"
    assert (await _apply(auth, iam, "p1"))["X-Auth-Token"] == "token-1"
    assert (await _apply(auth, iam, "p2")) == {"X-Auth-Token": "token-2", "X-Project-Id": "p2"}
    assert len(iam.calls) == 2
    url, body = iam.calls[0]
    assert url == "https://iam.example/v3/auth/tokens"
    assert body == {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {"name": "alice", "password": PASSWORD, "domain": {"name": "acme"}}
                },
            },
            "scope": {"project": {"id": "p1"}},
        }
    }
    assert PASSWORD not in repr(auth)


@pytest.mark.anyio
async def test_iam_token_is_renewed_before_it_expires() -> None:
    clock, iam = FakeClock(), FakeIam(lifetime_s=3600)
    auth = _iam(clock, refresh_before_s=300)
    await _apply(auth, iam, "p1")
    clock.now += timedelta(seconds=3299)
    assert (await _apply(auth, iam, "p1"))["X-Auth-Token"] == "token-1"
    clock.now += timedelta(seconds=2)  # inside the 300 s margin
    assert (await _apply(auth, iam, "p1"))["X-Auth-Token"] == "token-2"


@pytest.mark.anyio
async def test_short_lived_tokens_renew_at_four_fifths_of_their_life() -> None:
    clock, iam = FakeClock(), FakeIam(lifetime_s=10)
    auth = _iam(clock, refresh_before_s=300)
    await _apply(auth, iam, "p1")
    clock.now += timedelta(seconds=7.9)
    assert (await _apply(auth, iam, "p1"))["X-Auth-Token"] == "token-1"
    clock.now += timedelta(seconds=0.2)
    assert (await _apply(auth, iam, "p1"))["X-Auth-Token"] == "token-2"


@pytest.mark.anyio
async def test_many_workers_hitting_a_401_cause_one_renewal() -> None:
    iam, auth = FakeIam(), _iam()
    used = await _apply(auth, iam, "p1")
    answers: list[bool] = []

    async def worker() -> None:
        answers.append(await auth.on_unauthorized(iam, "p1", used))

    async with anyio.create_task_group() as tg:
        for _ in range(50):
            tg.start_soon(worker)
    assert answers == [True] * 50
    assert len(iam.calls) == 2  # the first token, then exactly one renewal
    assert (await _apply(auth, iam, "p1"))["X-Auth-Token"] == "token-2"
    # A late 401 for the old token reuses the renewed one instead of fetching again.
    assert await auth.on_unauthorized(iam, "p1", used) is True
    assert len(iam.calls) == 2


@pytest.mark.anyio
async def test_a_401_for_the_current_token_renews_it() -> None:
    iam, auth = FakeIam(), _iam()
    first = await _apply(auth, iam, "p1")
    assert await auth.on_unauthorized(iam, "p1", first) is True
    second = await _apply(auth, iam, "p1")
    assert second["X-Auth-Token"] == "token-2"
    assert await auth.on_unauthorized(iam, "p1", second) is True
    assert len(iam.calls) == 3


@pytest.mark.anyio
async def test_a_refused_password_surfaces_as_auth_error() -> None:
    iam = FakeIam(fail=AuthError("credentials refused: POST /v3/auth/tokens: HTTP 401"))
    with pytest.raises(AuthError) as caught:
        await _apply(_iam(), iam, "p1")
    assert PASSWORD not in str(caught.value)


@pytest.mark.anyio
async def test_a_refused_password_is_asked_once_however_many_workers_wait() -> None:
    iam, auth = FakeIam(fail=AuthError("IAM refused the password")), _iam()

    async def one_worker() -> None:
        with pytest.raises(AuthError):
            await _apply(auth, iam, "p1")

    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(one_worker)
    with pytest.raises(AuthError):
        await _apply(auth, iam, "p2")  # another project: the same password, still refused
    assert len(iam.calls) == 1


@pytest.mark.anyio
async def test_an_answer_without_a_token_is_an_auth_error() -> None:
    async def no_token(url: str, body: bytes) -> tuple[Mapping[str, str], bytes]:
        return {}, b"{}"

    with pytest.raises(AuthError, match="X-Subject-Token"):
        await _apply(_iam(), no_token, "p1")  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_unreadable_expiry_falls_back_to_the_default_lifetime() -> None:
    clock = FakeClock()
    calls = 0

    async def odd_body(url: str, body: bytes) -> tuple[Mapping[str, str], bytes]:
        nonlocal calls
        calls += 1
        return {"X-Subject-Token": f"t{calls}"}, b"<html>not json</html>"

    auth = IamPasswordToken(
        "https://iam", "u", Secret(PASSWORD), "d", clock=clock, default_lifetime_s=100
    )
    headers: dict[str, str] = {}
    url = yarl.URL("https://h/v1/p")
    await auth.apply(odd_body, method="GET", url=url, headers=headers, body=b"", project_id="p")
    clock.now += timedelta(seconds=79)
    await auth.apply(odd_body, method="GET", url=url, headers=headers, body=b"", project_id="p")
    assert calls == 1
    clock.now += timedelta(seconds=2)
    await auth.apply(odd_body, method="GET", url=url, headers=headers, body=b"", project_id="p")
    assert calls == 2


def test_iam_needs_every_field() -> None:
    with pytest.raises(ConfigError, match="IAM"):
        IamPasswordToken("https://iam", "u", Secret(""), "d")


# -- credentials from the environment ----------------------------------------------------------


def test_ak_sk_from_env() -> None:
    auth = credentials_from_env({"HUAWEICLOUD_SDK_AK": AK, "HUAWEICLOUD_SDK_SK": f" {SK}\n"})
    assert isinstance(auth, AkSkSigner)
    assert SK not in repr(auth)


def test_token_from_env() -> None:
    assert isinstance(credentials_from_env({"CSBS_AUTH_TOKEN": "tok"}), StaticToken)


def test_nothing_in_env_means_no_authenticator() -> None:
    assert credentials_from_env({"HUAWEICLOUD_SDK_AK": "  ", "OTHER": "x"}) is None


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"HUAWEICLOUD_SDK_AK": AK}, "HUAWEICLOUD_SDK_SK is not"),
        ({"HUAWEICLOUD_SDK_SK": SK}, "HUAWEICLOUD_SDK_AK is not"),
        (
            {"HUAWEICLOUD_SDK_AK": AK, "HUAWEICLOUD_SDK_SK": SK, "CSBS_AUTH_TOKEN": "tok-x"},
            "keep one way",
        ),
        ({"HUAWEICLOUD_SDK_AK": "bad key", "HUAWEICLOUD_SDK_SK": SK}, "alphanumeric"),
    ],
)
def test_env_mistakes_are_config_errors_without_secrets(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        credentials_from_env(env)
    text = str(caught.value)
    for secret in (SK, "tok-x"):
        assert secret not in text


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


def test_security_token_from_env() -> None:
    env = {
        "HUAWEICLOUD_SDK_AK": AK,
        "HUAWEICLOUD_SDK_SK": SK,
        "HUAWEICLOUD_SDK_SECURITY_TOKEN": TOKEN,
    }
    auth = credentials_from_env(env)
    assert isinstance(auth, AkSkSigner)
    assert "security_token=Secret('***')" in repr(auth)
    with pytest.raises(ConfigError, match="belongs to a temporary AK/SK") as caught:
        credentials_from_env({"HUAWEICLOUD_SDK_SECURITY_TOKEN": TOKEN})
    assert TOKEN not in str(caught.value)
