"""The request path both clients share: token renewal on a 401, the session's life, TLS, and
one URL prefix per source region. Exceptions are checked for secrets as in test_client."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import anyio
import orjson
import pytest
from aiohttp import web

from orchestrator.errors import AuthError, PermanentApiError
from orchestrator.service.auth import Secret
from orchestrator.service.client import CsbsClient
from orchestrator.service.settings import ClientSettings
from orchestrator.service.tokens import StaticToken
from orchestrator.simulator.app import TOKENS
from orchestrator.simulator.csbs import GET_ITEM, REPLICATE
from tests.conftest import MakeSimulator
from tests.helpers.clientkit import (
    aksk,
    client_for,
    iam,
    raises,
    sim_secrets,
    stub_server,
)
from tests.helpers.runkit import fresh_items, task_for

# -- authentication -------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_wrong_secret_key_is_final_after_one_request(make_simulator: MakeSimulator) -> None:
    wrong = "wrong-secret-key-0123456789"
    async with make_simulator(items=30, auth="aksk") as sim, client_for(sim, aksk(sim, wrong)) as c:
        item = fresh_items(sim)[0]
        exc = await raises(AuthError, c.get_item(item.project_id, item.id), wrong, sim.config.sk)
        assert exc.http_status == 401
        assert str(exc).startswith("credentials refused")
        assert sim.counters.requests_for(GET_ITEM, 401) == 1  # no retry: 5 failures lock the key


@pytest.mark.asyncio
async def test_a_token_is_fetched_once_and_reused(make_simulator: MakeSimulator) -> None:
    async with make_simulator(items=30, auth="token") as sim, client_for(sim, iam(sim)) as client:
        item = fresh_items(sim)[0]
        for _ in range(5):
            await client.get_item(item.project_id, item.id)
        assert sim.counters.requests_for(TOKENS, 201) == 1
        await client.count_items(sim.state.projects[1].id)  # another project: its own token
        assert sim.counters.requests_for(TOKENS, 201) == 2


@pytest.mark.asyncio
async def test_a_revoked_token_is_renewed_once_for_all_workers(
    make_simulator: MakeSimulator,
) -> None:
    async with make_simulator(items=30, auth="token") as sim, client_for(sim, iam(sim)) as client:
        item = fresh_items(sim)[0]
        await client.get_item(item.project_id, item.id)
        sim.auth.revoke_tokens()

        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(client.get_item, item.project_id, item.id)
        assert sim.counters.requests_for(TOKENS, 201) == 2  # one renewal, not twenty
        assert sim.counters.requests_for(GET_ITEM, 401) == 20
        assert sim.counters.requests_for(GET_ITEM, 200) == 21


@pytest.mark.asyncio
async def test_an_expired_token_is_renewed(make_simulator: MakeSimulator) -> None:
    async with (
        make_simulator(items=30, auth="token", token_ttl_s=600) as sim,
        client_for(sim, iam(sim)) as client,
    ):
        item = fresh_items(sim)[0]
        await client.get_item(item.project_id, item.id)
        sim.advance(601)  # simulated time only: our clock still thinks the token is fresh
        await client.get_item(item.project_id, item.id)
        assert sim.counters.requests_for(GET_ITEM, 401) == 1
        assert sim.counters.requests_for(TOKENS, 201) == 2


@pytest.mark.asyncio
async def test_a_401_after_a_renewal_is_final(make_simulator: MakeSimulator) -> None:
    async with (
        make_simulator(items=30, auth="token", token_ttl_s=0) as sim,  # tokens born expired
        client_for(sim, iam(sim)) as client,
    ):
        item = fresh_items(sim)[0]
        exc = await raises(AuthError, client.replicate(task_for(sim, item)), *sim_secrets(sim))
        assert str(exc).startswith("credentials refused")
        assert sim.counters.requests_for(TOKENS, 201) == 2
        assert sim.counters.requests_for(REPLICATE, 401) == 2
        assert sim.counters.replications.total() == 0


@pytest.mark.asyncio
async def test_a_wrong_password_is_an_auth_error_before_any_call(
    make_simulator: MakeSimulator,
) -> None:
    wrong = "not-the-password-42"
    async with (
        make_simulator(items=30, auth="token") as sim,
        client_for(sim, iam(sim, wrong)) as client,
    ):
        item = fresh_items(sim)[0]
        exc = await raises(AuthError, client.get_item(item.project_id, item.id), wrong)
        assert exc.http_status == 401
        assert sim.counters.requests_for(TOKENS, 401) == 1
        assert sim.counters.requests_for(GET_ITEM, 200) == 0


@pytest.mark.asyncio
async def test_a_static_token_for_another_project_is_refused(
    make_simulator: MakeSimulator,
) -> None:
    async with make_simulator(items=30, auth="token") as sim:
        issued = sim.auth.issue_token(
            orjson.dumps(
                {
                    "auth": {
                        "identity": {
                            "methods": ["password"],
                            "password": {
                                "user": {
                                    "name": sim.config.user,
                                    "password": sim.config.password,
                                    "domain": {"name": sim.config.domain},
                                }
                            },
                        },
                        "scope": {"project": {"id": sim.state.projects[1].id}},
                    }
                }
            )
        )
        async with client_for(sim, StaticToken(Secret(issued.token))) as client:
            project_id = sim.state.projects[1].id
            assert await client.count_items(project_id) == 10
            exc = await raises(
                AuthError, client.count_items(sim.state.projects[0].id), issued.token
            )
            assert (exc.http_status, exc.error_code) == (403, "APIGW.0306")
            sim.auth.revoke_tokens()
            await raises(AuthError, client.count_items(project_id), issued.token)


# -- the resource ---------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_tls_verification_is_on_by_default() -> None:
    client = CsbsClient(ClientSettings(endpoint="https://csbs.example"))
    async with client:
        assert client._session is not None
        # aiohttp keeps the setting privately; True means "verify with the default context".
        assert client._session.connector._ssl is True  # type: ignore[union-attr]
    insecure = CsbsClient(ClientSettings(endpoint="https://csbs.example", verify_tls=False))
    async with insecure:
        assert insecure._session is not None
        assert insecure._session.connector._ssl is False  # type: ignore[union-attr]


@pytest.mark.asyncio
async def test_a_client_refuses_reuse() -> None:
    client = CsbsClient(ClientSettings(endpoint="http://127.0.0.1:9"))
    with pytest.raises(RuntimeError, match="not open"):
        await client.get_item("p", "i")
    async with client:
        pass
    with pytest.raises(RuntimeError, match="twice"):
        async with client:
            pass
    with pytest.raises(RuntimeError, match="not open"):
        await client.count_items("p")


@pytest.mark.asyncio
async def test_the_session_closes_even_when_cancelled() -> None:
    client = CsbsClient(ClientSettings(endpoint="http://127.0.0.1:9"))
    with anyio.CancelScope() as scope:
        async with client:
            session = client._session
            scope.cancel()
            await anyio.sleep_forever()
    assert scope.cancelled_caught
    assert session is not None
    assert session.closed


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    command = [openssl, "req", "-x509", "-newkey", "ec", "-nodes", "-days", "1"]
    command += ["-pkeyopt", "ec_paramgen_curve:prime256v1", "-subj", "/CN=127.0.0.1"]
    command += ["-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)]
    subprocess.run(command, check=True, capture_output=True)  # noqa: S603 - fixed arguments
    return cert, key


@pytest.mark.asyncio
async def test_an_untrusted_certificate_is_a_permanent_error(
    self_signed: tuple[Path, Path],
) -> None:
    cert, key = self_signed
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    async def capabilities(_: web.Request) -> web.Response:
        return web.json_response({"regions": [{"name": "r", "replication_destinations": []}]})

    async with stub_server(capabilities, context) as url:
        async with CsbsClient(ClientSettings(endpoint=url)) as client:
            exc = await raises(PermanentApiError, client.capabilities("p"))
            assert "TLS" in str(exc)
        async with CsbsClient(ClientSettings(endpoint=url, ca_file=str(cert))) as client:
            assert await client.capabilities("p") == {"r": []}
        async with CsbsClient(ClientSettings(endpoint=url, verify_tls=False)) as client:
            assert await client.capabilities("p") == {"r": []}


@pytest.mark.asyncio
async def test_each_source_region_gets_its_own_prefix() -> None:
    client = CsbsClient(ClientSettings(region="cn-north-1"))
    assert client._prefix(None, "p1") == "https://csbs.cn-north-1.myhuaweicloud.com/v1/p1"
    assert client._prefix("cn-east-3", "p2") == "https://csbs.cn-east-3.myhuaweicloud.com/v1/p2"
    assert client._prefix("cn-east-3", "a b") == "https://csbs.cn-east-3.myhuaweicloud.com/v1/a%20b"
