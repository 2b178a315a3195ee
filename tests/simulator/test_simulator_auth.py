"""Authentication over loopback: IAM tokens, AK/SK signatures made by huaweicloudsdkcore's
own ``Signer`` (the test oracle), clock skew, lockout, project scoping and auth modes."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import orjson
import pytest
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer.signer import Signer

from orchestrator.models import PROVIDER_ID
from orchestrator.signing import DATE_FORMAT
from orchestrator.simulator import Simulator

pytestmark = pytest.mark.asyncio

MakeSimulator = Callable[..., Simulator]
Answer = tuple[int, Any]


def sdk_sign(
    sim: Simulator,
    method: str,
    path: str,
    *,
    query: list[tuple[str, object]] | None = None,
    body: bytes = b"",
    project_id: str | None = None,
    sdk_date: str | None = None,
    secret: str | None = None,
    content_type: str = "application/json",
) -> tuple[str, dict[str, str]]:
    """Sign as the official SDK does; returns (url, headers)."""
    headers = {"Content-Type": content_type}
    if project_id:
        headers["X-Project-Id"] = project_id
    if sdk_date:
        headers["X-Sdk-Date"] = sdk_date
    request = SdkRequest(
        method=method,
        schema="http",
        host=sim.base_url.removeprefix("http://"),
        resource_path=path,
        query_params=query or [],
        header_params=headers,
        body=body,
    )
    credentials = BasicCredentials(sim.config.ak, secret or sim.config.sk)
    Signer(credentials).sign(request)
    return sim.base_url + request.uri, dict(request.header_params)


async def send(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
) -> Answer:
    async with session.request(method, url, headers=headers, data=body or None) as resp:
        return resp.status, orjson.loads(await resp.read())


def password_body(sim: Simulator, project_id: str, password: str | None = None) -> bytes:
    user = {
        "name": sim.config.user,
        "password": password or sim.config.password,
        "domain": {"name": sim.config.domain},
    }
    return orjson.dumps(
        {
            "auth": {
                "identity": {"methods": ["password"], "password": {"user": user}},
                "scope": {"project": {"id": project_id}},
            }
        }
    )


async def get_token(session: aiohttp.ClientSession, sim: Simulator, project_id: str) -> str:
    async with session.post(
        sim.base_url + "/v3/auth/tokens", data=password_body(sim, project_id)
    ) as resp:
        assert resp.status == 201
        token = (await resp.json())["token"]
        assert token["project"]["id"] == project_id
        assert token["expires_at"].endswith("Z")
        return resp.headers["X-Subject-Token"]


def count_url(sim: Simulator, project: int = 0) -> str:
    return f"{sim.base_url}/v1/{sim.state.projects[project].id}/checkpoint_items/count"


async def test_token_flow(make_simulator: MakeSimulator) -> None:
    async with make_simulator(items=30, token_ttl_s=3600) as sim, aiohttp.ClientSession() as s:
        project = sim.state.projects[0].id
        token = await get_token(s, sim, project)
        assert token not in repr(sim.auth.issue_token(password_body(sim, project)))
        assert await send(s, "GET", count_url(sim), {"X-Auth-Token": token}) == (
            200,
            {"count": 10},
        )
        status, error = await send(s, "GET", count_url(sim, 1), {"X-Auth-Token": token})
        assert (status, error["error_code"]) == (403, "APIGW.0306")
        status, error = await send(s, "GET", count_url(sim), {"X-Auth-Token": "MIIforged"})
        assert (status, error["error_code"]) == (401, "APIGW.0301")
        assert "decrypt token fail" in error["error_msg"]
        sim.advance(3600)
        status, error = await send(s, "GET", count_url(sim), {"X-Auth-Token": token})
        assert status == 401
        assert "token expires" in error["error_msg"]


async def test_missing_credentials_and_revoked_token(make_simulator: MakeSimulator) -> None:
    async with make_simulator(items=9) as sim, aiohttp.ClientSession() as s:
        status, error = await send(s, "GET", count_url(sim))
        assert (status, error["error_code"]) == (401, "APIGW.0301")
        token = await get_token(s, sim, sim.state.projects[0].id)
        async with s.post(sim.base_url + "/_sim/revoke", json={"tokens": True}) as resp:
            assert (await resp.json()) == {"revoked_tokens": 1}
        assert (await send(s, "GET", count_url(sim), {"X-Auth-Token": token}))[0] == 401


async def test_token_request_errors_use_the_iam_shape(make_simulator: MakeSimulator) -> None:
    async with make_simulator(items=3) as sim, aiohttp.ClientSession() as s:
        url = sim.base_url + "/v3/auth/tokens"
        project = sim.state.projects[0].id
        status, error = await send(s, "POST", url, body=password_body(sim, project, "wrong"))
        assert status == 401
        assert error["error"]["code"] == 401
        assert "password" in error["error"]["message"]
        status, error = await send(s, "POST", url, body=b"{}")
        assert (status, error["error"]["code"]) == (400, 400)
        status, _ = await send(s, "POST", url, body=password_body(sim, "f" * 32))
        assert status == 400
        by_name = orjson.loads(password_body(sim, project))
        by_name["auth"]["scope"]["project"] = {"name": sim.state.projects[1].region}
        async with s.post(url, data=orjson.dumps(by_name)) as resp:
            assert resp.status == 201
            assert (await resp.json())["token"]["project"]["id"] == sim.state.projects[1].id


async def test_sdk_signed_requests_are_accepted(make_simulator: MakeSimulator) -> None:
    async with make_simulator(items=60) as sim, aiohttp.ClientSession() as s:
        project = sim.state.projects[0]
        path = f"/v1/{project.id}/checkpoint_items"
        query: list[tuple[str, object]] = [
            ("status", "available"),
            ("limit", 5),
            ("name", "bk_ a+b/~"),
        ]
        url, headers = sdk_sign(sim, "GET", path, query=query, project_id=project.id)
        status, body = await send(s, "GET", url, headers)
        assert status == 200, body
        item = next(
            i
            for i in sim.state.items_of(project.id)
            if i.status == "available" and not sim.state.records_of(i)
        )
        region = sim.state.capabilities()[project.region][0]
        payload = orjson.dumps(
            {"replication": {"destination_region": region, "destination_project_id": "c" * 32}}
        )
        path = f"/v1/{project.id}/providers/{PROVIDER_ID}/checkpoint_items/{item.id}/replicate"
        url, headers = sdk_sign(sim, "POST", path, body=payload, project_id=project.id)
        status, body = await send(s, "POST", url, headers, payload)
        assert status == 200, body
        assert body["replication"]["checkpoint_item_id"] == item.id


async def test_an_unsigned_payload_is_accepted_as_the_sdk_signs_it(
    make_simulator: MakeSimulator,
) -> None:
    """The SDK signs a body that is not JSON with ``X-Sdk-Content-Sha256: UNSIGNED-PAYLOAD``
    in place of the body's hash; the gateway accepts it (issue 15)."""
    async with make_simulator(items=60) as sim, aiohttp.ClientSession() as s:
        project = sim.state.projects[0]
        item = next(
            i
            for i in sim.state.items_of(project.id)
            if i.status == "available" and not sim.state.records_of(i)
        )
        region = sim.state.capabilities()[project.region][0]
        payload = orjson.dumps(
            {"replication": {"destination_region": region, "destination_project_id": "c" * 32}}
        )
        path = f"/v1/{project.id}/providers/{PROVIDER_ID}/checkpoint_items/{item.id}/replicate"
        url, headers = sdk_sign(
            sim, "POST", path, body=payload, project_id=project.id, content_type="text/plain"
        )
        assert headers["X-Sdk-Content-Sha256"] == "UNSIGNED-PAYLOAD"
        status, body = await send(s, "POST", url, headers, payload)
        assert status == 200, body
        # The header is signed like any other: dropping it breaks the signature.
        del headers["X-Sdk-Content-Sha256"]
        status, _ = await send(s, "POST", url, headers, payload)
        assert status == 401


async def test_tampered_signatures_are_refused(make_simulator: MakeSimulator) -> None:
    async with make_simulator(items=30) as sim, aiohttp.ClientSession() as s:
        project = sim.state.projects[0].id
        path = f"/v1/{project}/checkpoint_items/count"
        url, headers = sdk_sign(sim, "GET", path, project_id=project)
        assert (await send(s, "GET", url, headers))[0] == 200
        flipped = "1" if headers["Authorization"].endswith("0") else "0"
        tampered = {**headers, "Authorization": headers["Authorization"][:-1] + flipped}
        status, error = await send(s, "GET", url, tampered)
        assert (status, error["error_code"]) == (401, "APIGW.0301")
        assert "signature" in error["error_msg"]
        # A signed header changed after signing.
        status, _ = await send(s, "GET", url, {**headers, "Content-Type": "text/plain"})
        assert status == 401
        # A body other than the one signed.
        status, _ = await send(s, "GET", url, headers, b'{"x": 1}')
        assert status == 401
        # The right signature for another secret.
        url, wrong = sdk_sign(sim, "GET", path, project_id=project, secret="not-the-secret")
        assert (await send(s, "GET", url, wrong))[0] == 401


async def test_signed_project_must_match_the_path(make_simulator: MakeSimulator) -> None:
    async with make_simulator(items=30) as sim, aiohttp.ClientSession() as s:
        mine, other = sim.state.projects[0].id, sim.state.projects[1].id
        url, headers = sdk_sign(sim, "GET", f"/v1/{mine}/checkpoint_items/count", project_id=other)
        status, error = await send(s, "GET", url, headers)
        assert (status, error["error_code"]) == (403, "APIGW.0306")


async def test_clock_skew_over_15_minutes_is_refused(make_simulator: MakeSimulator) -> None:
    async with make_simulator(items=3) as sim, aiohttp.ClientSession() as s:
        path = f"/v1/{sim.state.projects[0].id}/checkpoint_items/count"
        now = datetime.now(UTC)
        for minutes, expected in ((-14, 200), (14, 200), (-16, 401), (16, 401)):
            stamp = (now + timedelta(minutes=minutes)).strftime(DATE_FORMAT)
            url, headers = sdk_sign(sim, "GET", path, sdk_date=stamp)
            status, body = await send(s, "GET", url, headers)
            assert status == expected, (minutes, body)
            if expected == 401:
                assert body["error_code"] == "APIGW.0303"


async def test_five_bad_signatures_lock_the_key(make_simulator: MakeSimulator) -> None:
    async with make_simulator(items=3) as sim, aiohttp.ClientSession() as s:
        path = f"/v1/{sim.state.projects[0].id}/checkpoint_items/count"
        for _ in range(5):
            url, bad = sdk_sign(sim, "GET", path, secret="wrong")
            assert (await send(s, "GET", url, bad))[0] == 401
        url, good = sdk_sign(sim, "GET", path)
        status, error = await send(s, "GET", url, good)
        assert status == 401
        assert "locked" in error["error_msg"]
        sim.advance(300)
        url, good = sdk_sign(sim, "GET", path)
        assert (await send(s, "GET", url, good))[0] == 200


async def test_a_good_signature_resets_the_failure_count(make_simulator: MakeSimulator) -> None:
    async with make_simulator(items=3) as sim, aiohttp.ClientSession() as s:
        path = f"/v1/{sim.state.projects[0].id}/checkpoint_items/count"
        for _ in range(3):
            for _ in range(4):
                url, bad = sdk_sign(sim, "GET", path, secret="wrong")
                assert (await send(s, "GET", url, bad))[0] == 401
            url, good = sdk_sign(sim, "GET", path)
            assert (await send(s, "GET", url, good))[0] == 200


async def test_unknown_or_revoked_access_key(make_simulator: MakeSimulator) -> None:
    async with make_simulator(items=3) as sim, aiohttp.ClientSession() as s:
        path = f"/v1/{sim.state.projects[0].id}/checkpoint_items/count"
        url, headers = sdk_sign(sim, "GET", path)
        headers["Authorization"] = headers["Authorization"].replace(sim.config.ak, "OTHERAK")
        assert (await send(s, "GET", url, headers))[0] == 401
        async with s.post(sim.base_url + "/_sim/revoke", json={"ak": sim.config.ak}) as resp:
            assert resp.status == 200
        url, headers = sdk_sign(sim, "GET", path)
        assert (await send(s, "GET", url, headers))[0] == 401
        status, _ = await send(s, "GET", url, {**headers, "Authorization": "Basic xyz"})
        assert status == 401


@pytest.mark.parametrize(
    ("mode", "token_ok", "aksk_ok", "anonymous_ok"),
    [
        ("any", True, True, False),
        ("token", True, False, False),
        ("aksk", False, True, False),
        ("none", True, True, True),
    ],
)
async def test_auth_modes(
    make_simulator: MakeSimulator, mode: str, token_ok: bool, aksk_ok: bool, anonymous_ok: bool
) -> None:
    async with make_simulator(items=3, auth=mode) as sim, aiohttp.ClientSession() as s:
        project = sim.state.projects[0].id
        token = await get_token(s, sim, project)
        ok = {True: 200, False: 401}
        assert (await send(s, "GET", count_url(sim), {"X-Auth-Token": token}))[0] == ok[token_ok]
        url, headers = sdk_sign(sim, "GET", f"/v1/{project}/checkpoint_items/count")
        assert (await send(s, "GET", url, headers))[0] == ok[aksk_ok]
        assert (await send(s, "GET", count_url(sim)))[0] == ok[anonymous_ok]
