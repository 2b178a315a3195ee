"""The CSBS client over loopback against the simulator, plus its pure error-parsing helpers.

Every exception a test sees goes through :func:`assert_no_secrets`: no SK, token or
password may appear in any message, repr or chained cause.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any, TypeVar

import anyio
import orjson
import pytest
from aiohttp import web

from orchestrator.errors import (
    AlreadyReplicatedError,
    ApiError,
    AuthError,
    Classification,
    ConfigError,
    ErrorTable,
    PermanentApiError,
    TransientApiError,
    TransportError,
)
from orchestrator.models import ReplicationTask
from orchestrator.service.auth import AkSkSigner, IamPasswordToken, Secret, StaticToken
from orchestrator.service.client import (
    ClientSettings,
    CsbsClient,
    Timeouts,
    error_for_response,
    parse_error_body,
    parse_retry_after,
)
from orchestrator.simulator import Simulator
from orchestrator.simulator.app import GET_ITEM, LIST_ITEMS, REPLICATE, TOKENS
from tests.helpers.runkit import fresh_items, task_for

MakeSimulator = Callable[..., Simulator]


# -- helpers ------------------------------------------------------------------------------------


def assert_no_secrets(exc: BaseException, *secrets: str) -> None:
    """Neither the exception nor anything chained to it shows a secret."""
    seen: BaseException | None = exc
    while seen is not None:
        texts = [str(seen), repr(seen), *(str(a) for a in seen.args)]
        if isinstance(seen, ApiError):
            texts += [str(seen.error_msg), str(seen.error_code), str(seen.request_id)]
        for text in texts:
            for secret in secrets:
                assert secret not in text, f"secret leaked in {type(seen).__name__}: {text}"
        seen = seen.__cause__ or seen.__context__


def sim_secrets(sim: Simulator) -> tuple[str, str]:
    return sim.config.sk, sim.config.password


def client_for(sim: Simulator, auth: Any = "aksk", **settings: Any) -> CsbsClient:
    """A client of ``sim``; AK/SK-signed unless another authenticator (or None) is given."""
    if auth == "aksk":
        auth = aksk(sim)
    return CsbsClient(ClientSettings(endpoint=sim.base_url, **settings), auth)


def aksk(sim: Simulator, sk: str | None = None) -> AkSkSigner:
    return AkSkSigner(sim.config.ak, Secret(sk or sim.config.sk))


def iam(sim: Simulator, password: str | None = None) -> IamPasswordToken:
    return IamPasswordToken(
        sim.base_url,
        sim.config.user,
        Secret(password or sim.config.password),
        sim.config.domain,
    )


E = TypeVar("E", bound=BaseException)


async def raises(kind: type[E], call: Awaitable[Any], *secrets: str) -> E:
    with pytest.raises(kind) as caught:
        await call
    assert_no_secrets(caught.value, *secrets)
    return caught.value


# -- replicate -----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_replicate_returns_the_record_id(make_simulator: MakeSimulator) -> None:
    async with make_simulator(items=30, auth="aksk") as sim, client_for(sim, aksk(sim)) as client:
        item = fresh_items(sim)[0]
        task = task_for(sim, item, name="nightly copy", description="é ü", enable_acceleration=True)
        record_id = await client.replicate(task)
        record = sim.state.record(record_id)
        assert record is not None
        assert (record.item.id, record.destination_region) == (item.id, task.destination_region)
        assert (record.name, record.enable_acceleration) == ("nightly copy", True)
        assert record.destination_project_id == task.destination_project_id
        assert sim.counters.requests_for(REPLICATE, 200) == 1


@pytest.mark.asyncio
async def test_a_second_replicate_is_already_replicated(make_simulator: MakeSimulator) -> None:
    async with make_simulator(items=30) as sim, client_for(sim, aksk(sim)) as client:
        task = task_for(sim, fresh_items(sim)[0])
        record_id = await client.replicate(task)
        exc = await raises(AlreadyReplicatedError, client.replicate(task), *sim_secrets(sim))
        assert (exc.http_status, exc.error_code) == (400, "BackupService.1009")
        assert exc.error_msg is not None
        assert "replicated" in exc.error_msg
        assert exc.request_id
        assert await client.find_replication(task) == record_id


@pytest.mark.asyncio
async def test_the_error_table_is_injectable(make_simulator: MakeSimulator) -> None:
    table = ErrorTable.with_overrides({"CSBS.7777": "already_replicated"})
    async with (
        make_simulator(items=30, duplicate_code="CSBS.7777", duplicate_status=409) as sim,
        client_for(sim, aksk(sim), error_table=table) as client,
    ):
        task = task_for(sim, fresh_items(sim)[0])
        await client.replicate(task)
        exc = await raises(AlreadyReplicatedError, client.replicate(task))
        assert (exc.http_status, exc.error_code) == (409, "CSBS.7777")
    async with (
        make_simulator(items=30, duplicate_code="CSBS.7777", duplicate_status=409) as sim,
        client_for(sim, aksk(sim)) as client,
    ):
        task = task_for(sim, fresh_items(sim)[0])
        await client.replicate(task)
        await raises(PermanentApiError, client.replicate(task))  # unknown code, plain 409


@pytest.mark.asyncio
async def test_service_refusals_map_to_their_classes(make_simulator: MakeSimulator) -> None:
    async with make_simulator(items=60) as sim, client_for(sim, aksk(sim)) as client:
        project_id = sim.state.projects[0].id
        items = sim.state.items_of(project_id)
        by_status = {item.status: item for item in items}
        secrets = sim_secrets(sim)

        missing = ReplicationTask(
            "00000000-0000-0000-0000-000000000000",
            project_id,
            "cn-east-2",
            sim.state.destination_projects["cn-east-2"],
        )
        exc: ApiError = await raises(PermanentApiError, client.replicate(missing), *secrets)
        assert (exc.http_status, exc.error_code) == (404, "CSBS.3001")

        exc = await raises(PermanentApiError, client.replicate(task_for(sim, by_status["error"])))
        assert (exc.http_status, exc.error_code) == (400, "CSBS.4000")

        busy = task_for(sim, by_status["protecting"])
        exc = await raises(TransientApiError, client.replicate(busy), *secrets)
        assert (exc.http_status, exc.error_code) == (400, "CSBS.2003")

        item = fresh_items(sim)[0]
        unsupported = ReplicationTask(
            item.id, project_id, "eu-west-0", "f" * 32, source_region=item.region
        )
        exc = await raises(PermanentApiError, client.replicate(unsupported))
        assert (exc.http_status, exc.error_code) == (400, "BackupService.1005")

        bad_project = task_for(sim, item)
        bad_project = ReplicationTask(
            item.id, project_id, bad_project.destination_region, "not-a-project-id"
        )
        exc = await raises(PermanentApiError, client.replicate(bad_project))
        assert (exc.http_status, exc.error_code) == (400, "CSBS.9001")
        assert exc.request_id
        assert "destination_project_id" in str(exc)


@pytest.mark.parametrize(
    ("knob", "status", "code"),
    [("p503", 503, None), ("p500", 500, "CSBS.9999")],
)
@pytest.mark.asyncio
async def test_server_faults_are_transient(
    make_simulator: MakeSimulator, knob: str, status: int, code: str | None
) -> None:
    async with make_simulator(items=30, **{knob: 1.0}) as sim, client_for(sim) as client:
        task = task_for(sim, fresh_items(sim)[0])
        exc = await raises(TransientApiError, client.replicate(task))
        assert (exc.http_status, exc.error_code, exc.retry_after) == (status, code, None)
        assert exc.request_id
        assert await client.find_replication(task) is None  # nothing was applied


@pytest.mark.asyncio
async def test_503_with_retry_after(make_simulator: MakeSimulator) -> None:
    async with make_simulator(items=30, p503=1.0, retry_after_s=4) as sim, client_for(sim) as c:
        exc = await raises(TransientApiError, c.replicate(task_for(sim, fresh_items(sim)[0])))
        assert exc.retry_after == 4.0


@pytest.mark.asyncio
async def test_capacity_refusal_is_transient(make_simulator: MakeSimulator) -> None:
    async with make_simulator(items=60, max_in_flight=1) as sim, client_for(sim) as client:
        first, second = fresh_items(sim)[:2]
        await client.replicate(task_for(sim, first))
        exc = await raises(TransientApiError, client.replicate(task_for(sim, second)))
        assert (exc.http_status, exc.error_code) == (503, None)


@pytest.mark.asyncio
async def test_throttling_429_carries_retry_after(make_simulator: MakeSimulator) -> None:
    async with (
        make_simulator(items=30, throttle_rate=0.001, throttle_burst=1, retry_after_s=2.5) as sim,
        client_for(sim, retry_after_cap_s=60) as client,
    ):
        items = fresh_items(sim)
        await client.replicate(task_for(sim, items[0]))
        exc = await raises(TransientApiError, client.replicate(task_for(sim, items[1])))
        assert (exc.http_status, exc.error_code) == (429, "APIG.0308")
        assert exc.retry_after == 3.0  # whole seconds, rounded up by the gateway
        assert exc.error_msg is not None
        assert "ratelimit" in exc.error_msg


@pytest.mark.asyncio
async def test_retry_after_is_capped_by_the_settings(make_simulator: MakeSimulator) -> None:
    async with (
        make_simulator(items=30, p503=1.0, retry_after_s=3600) as sim,
        client_for(sim, retry_after_cap_s=45) as client,
    ):
        exc = await raises(TransientApiError, client.replicate(task_for(sim, fresh_items(sim)[0])))
        assert exc.retry_after == 45.0


@pytest.mark.asyncio
async def test_malformed_and_html_answers_are_sanitised(make_simulator: MakeSimulator) -> None:
    async with make_simulator(items=60, p_malformed=1.0) as sim, client_for(sim) as client:
        statuses = set()
        for item in fresh_items(sim)[:12]:
            exc = await raises(TransientApiError, client.replicate(task_for(sim, item)))
            statuses.add(exc.http_status)
            assert exc.error_msg
            assert "<" not in exc.error_msg
            assert "\n" not in str(exc)
            assert len(exc.error_msg) <= 210
            if exc.http_status in (502, 503):
                assert "502 Bad Gateway" in exc.error_msg
                assert exc.error_code is None
        assert statuses == {500, 502, 503}


# -- no answer ------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_dropped_connection_may_have_applied(make_simulator: MakeSimulator) -> None:
    """Dropped before applying: still maybe_applied=True, because a client cannot tell a
    server that read the request and closed from one that applied it and then closed."""
    async with make_simulator(items=30, p_drop=1.0) as sim, client_for(sim) as client:
        task = task_for(sim, fresh_items(sim)[0])
        exc = await raises(TransportError, client.replicate(task))
        assert exc.maybe_applied is True
        assert await client.find_replication(task) is None  # reconcile: it was not applied
        assert sim.counters.replications.total() == 0


@pytest.mark.asyncio
async def test_apply_then_drop_is_found_by_reconciling(make_simulator: MakeSimulator) -> None:
    async with make_simulator(items=30, p_apply_drop=1.0) as sim, client_for(sim) as client:
        task = task_for(sim, fresh_items(sim)[0])
        exc = await raises(TransportError, client.replicate(task))
        assert exc.maybe_applied is True
        found = await client.find_replication(task)
        assert found is not None
        assert found == sim.state.latest_record(task.checkpoint_item_id, task.destination_region).id  # type: ignore[union-attr]


@pytest.mark.asyncio
async def test_connection_refused_was_not_applied() -> None:
    with socket.socket() as probe:  # a port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = ClientSettings(endpoint=f"http://127.0.0.1:{port}")
    async with CsbsClient(settings) as client:
        task = ReplicationTask("item", "p" * 32, "cn-east-2", "d" * 32)
        exc = await raises(TransportError, client.replicate(task))
        assert exc.maybe_applied is False
        assert "cannot connect" in str(exc)


@pytest.mark.asyncio
async def test_a_timed_out_replicate_may_have_applied(make_simulator: MakeSimulator) -> None:
    timeouts = Timeouts(total_s=0.02, connect_s=1, read_s=5)
    async with (
        make_simulator(items=30, latency_s=0.05) as sim,
        client_for(sim, timeouts=timeouts) as client,
    ):
        exc = await raises(TransportError, client.replicate(task_for(sim, fresh_items(sim)[0])))
        assert exc.maybe_applied is True


@pytest.mark.asyncio
async def test_the_read_timeout_bounds_gets_not_replicates(make_simulator: MakeSimulator) -> None:
    # A replicate's tiny answer is bounded by the total; the per-chunk read timer is for pages.
    timeouts = Timeouts(total_s=5, connect_s=1, read_s=0.01)
    async with (
        make_simulator(items=30, latency_s=0.05, faults_on="all") as sim,
        client_for(sim, timeouts=timeouts) as client,
    ):
        project_id = sim.state.projects[0].id
        exc = await raises(TransportError, client.count_items(project_id))
        assert "no complete answer" in str(exc)
        record_id = await client.replicate(task_for(sim, fresh_items(sim)[0]))
        assert record_id


# -- reading --------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_paging_walks_every_page(make_simulator: MakeSimulator) -> None:
    async with make_simulator(items=90, auth="aksk") as sim, client_for(sim, aksk(sim)) as client:
        project_id = sim.state.projects[0].id
        expected = sorted(item.id for item in sim.state.items_of(project_id))
        seen = [item["id"] async for item in client.iter_items(project_id, page_size=7)]
        assert sorted(seen) == expected
        assert len(seen) == len(set(seen)) == 30
        pages = sim.counters.requests_for(LIST_ITEMS, 200)
        assert pages == 5  # 7+7+7+7+2: four full pages, then a short one
        assert await client.count_items(project_id) == 30
        available = [i.id for i in sim.state.items_of(project_id) if i.status == "available"]
        seen = [
            i["id"] async for i in client.iter_items(project_id, page_size=4, status="available")
        ]
        assert sorted(seen) == sorted(available)
        assert await client.count_items(project_id, status="available") == len(available)


@pytest.mark.asyncio
async def test_exact_multiple_of_the_page_ends_on_an_empty_page(
    make_simulator: MakeSimulator,
) -> None:
    async with make_simulator(items=30, auth="none") as sim, client_for(sim) as client:
        project_id = sim.state.projects[0].id  # 10 items
        seen = [i async for i in client.iter_items(project_id, page_size=5)]
        assert len(seen) == 10
        assert sim.counters.requests_for(LIST_ITEMS, 200) == 3


@pytest.mark.asyncio
async def test_signed_queries_with_awkward_characters(make_simulator: MakeSimulator) -> None:
    async with make_simulator(items=30, auth="aksk") as sim, client_for(sim, aksk(sim)) as client:
        project_id = sim.state.projects[0].id
        items = [
            i
            async for i in client.iter_items(
                project_id, name="é x+y/%&=", sort="created_at:desc,name", page_size=3
            )
        ]
        assert items == []
        item = sim.state.items_of(project_id)[0]
        got = await client.get_item(project_id, item.id)
        assert got["id"] == item.id
        await raises(PermanentApiError, client.get_item(project_id, "no such/item?#"))


@pytest.mark.asyncio
async def test_records_capabilities_and_find_replication(make_simulator: MakeSimulator) -> None:
    async with (
        make_simulator(items=30, copy_fail_rate=1.0, copy_wait_s=1, copy_duration_s=1) as sim,
        client_for(sim, aksk(sim)) as client,
    ):
        project_id = sim.state.projects[0].id
        capabilities = await client.capabilities(project_id)
        assert capabilities == {k: list(v) for k, v in sim.state.capabilities().items()}

        task = task_for(sim, fresh_items(sim)[0])
        assert await client.find_replication(task) is None
        record_id = await client.replicate(task)
        records = await client.replication_records(
            project_id,
            source_item_id=task.checkpoint_item_id,
            destination_region=task.destination_region,
        )
        assert [r["id"] for r in records] == [record_id]
        assert await client.find_replication(task) == record_id
        other_region = task_for(sim, fresh_items(sim)[0], destination=1)
        other_region = ReplicationTask(
            task.checkpoint_item_id,
            project_id,
            other_region.destination_region,
            other_region.destination_project_id,
        )
        assert await client.find_replication(other_region) is None
        sim.advance(10)  # the copy fails: a failed record does not count as replicated
        assert (await client.replication_records(project_id, status="fail"))[0]["id"] == record_id
        assert await client.find_replication(task) is None
        assert await client.replicate(task) != record_id  # and a new one may start


@pytest.mark.asyncio
async def test_a_skipped_record_is_not_a_live_replica(make_simulator: MakeSimulator) -> None:
    """Reconcile reads record statuses in the record vocabulary: ``skip`` is final and
    leaves no replica, so it does not make the pair ``already_replicated``."""
    async with (
        make_simulator(items=30, copy_skip_rate=1.0, copy_wait_s=1, copy_duration_s=1) as sim,
        client_for(sim, aksk(sim)) as client,
    ):
        task = task_for(sim, fresh_items(sim)[0])
        record_id = await client.replicate(task)
        assert await client.find_replication(task) == record_id  # waiting_replicate: live
        sim.advance(5)
        (record,) = await client.replication_records(
            task.project_id, source_item_id=task.checkpoint_item_id
        )
        assert record["status"] == "skip"
        assert await client.find_replication(task) is None


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


@asynccontextmanager
async def stub_server(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[str]:
    """A one-route loopback server for answers the simulator never gives."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


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
async def test_odd_success_answers() -> None:
    async def handler(request: web.Request) -> web.Response:
        if request.path.endswith("/replicate"):
            return web.json_response({"replication": {"project_id": "p"}})  # no record id
        if request.path.endswith("/count"):
            return web.Response(text="<html>ok</html>", content_type="text/html")
        return web.json_response({"checkpoint_items": "not a list"})

    async with stub_server(handler) as url, CsbsClient(ClientSettings(endpoint=url)) as client:
        exc = await raises(TransportError, client.replicate(ReplicationTask("i", "p", "r-1", "d")))
        assert exc.maybe_applied is True
        assert exc.http_status == 200
        bad = await raises(TransientApiError, client.count_items("p"))
        assert bad.http_status == 200
        await raises(TransientApiError, client.get_item("p", "i"))


@pytest.mark.asyncio
async def test_paging_that_does_not_advance_is_an_error() -> None:
    async def same_page(_: web.Request) -> web.Response:
        return web.json_response({"checkpoint_items": [{"id": "a"}, {"id": "b"}]})

    async with stub_server(same_page) as url, CsbsClient(ClientSettings(endpoint=url)) as client:
        seen: list[str] = []

        async def walk() -> None:
            async for item in client.iter_items("p", page_size=2):
                seen.append(item["id"])

        await raises(PermanentApiError, walk())
        assert seen == ["a", "b", "a", "b"]


# -- settings -------------------------------------------------------------------------------------


def test_endpoint_for() -> None:
    assert ClientSettings(region="cn-north-1").endpoint_for(None) == (
        "https://csbs.cn-north-1.myhuaweicloud.com"
    )
    settings = ClientSettings(region="cn-north-1")
    assert settings.endpoint_for("cn-east-3") == "https://csbs.cn-east-3.myhuaweicloud.com"
    explicit = ClientSettings(endpoint="http://127.0.0.1:8080/", region="cn-north-1")
    assert explicit.endpoint_for("cn-east-3") == "http://127.0.0.1:8080"
    with pytest.raises(ConfigError, match="no CSBS endpoint"):
        ClientSettings().endpoint_for(None)
    with pytest.raises(ConfigError, match="invalid region"):
        ClientSettings().endpoint_for("evil.com/x?")
    for bad in ("ftp://h", "not a url", "https://h/?q=1", "http://"):
        with pytest.raises(ConfigError, match="invalid endpoint"):
            ClientSettings(endpoint=bad).endpoint_for(None)
    with pytest.raises(ConfigError, match="credentials") as caught:
        ClientSettings(endpoint="https://user:hunter2@h").endpoint_for(None)
    assert "hunter2" not in str(caught.value)


@pytest.mark.asyncio
async def test_each_source_region_gets_its_own_prefix() -> None:
    client = CsbsClient(ClientSettings(region="cn-north-1"))
    assert client._prefix(None, "p1") == "https://csbs.cn-north-1.myhuaweicloud.com/v1/p1"
    assert client._prefix("cn-east-3", "p2") == "https://csbs.cn-east-3.myhuaweicloud.com/v1/p2"
    assert client._prefix("cn-east-3", "a b") == "https://csbs.cn-east-3.myhuaweicloud.com/v1/a%20b"


# -- error bodies ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"error_code":"CSBS.3001","error_msg":"not found"}', ("CSBS.3001", "not found", None)),
        (b'{"errorCode":"X.1","errorMsg":"camel"}', ("X.1", "camel", None)),
        (b'{"code":"Y.2","message":"plain"}', ("Y.2", "plain", None)),
        (
            b'{"error":{"code":"Z.3","message":"nested","request_id":"r9"}}',
            ("Z.3", "nested", "r9"),
        ),
        (b'{"error":{"code":401,"title":"Unauthorized","message":"bad"}}', ("401", "bad", None)),
        (
            b'{"error_code":"APIGW.0301","error_msg":"m","request_id":"r1"}',
            ("APIGW.0301", "m", "r1"),
        ),
        (b"<html><body><h1>502 Bad Gateway</h1></body></html>", (None, "502 Bad Gateway", None)),
        (b"", (None, None, None)),
        (b"[1, 2]", (None, "[1, 2]", None)),
        (b'{"unexpected": true}', (None, '{"unexpected": true}', None)),
        (
            b'{"error_code":"CSBS.9999","error_msg":"Operation fai',  # cut short: a snippet
            (None, '{"error_code":"CSBS.9999","error_msg":"Operation fai', None),
        ),
    ],
)
def test_error_body_shapes(body: bytes, expected: tuple[str | None, ...]) -> None:
    assert parse_error_body(body) == expected


def test_error_snippets_are_short_and_single_line() -> None:
    body = b"<html>" + b"line\r\n\x1b[31m" * 500 + b"</html>"
    _, msg, _ = parse_error_body(body)
    assert msg is not None
    assert len(msg) <= 203
    assert msg.isprintable()
    assert "\x1b" not in msg


@pytest.mark.parametrize(
    ("status", "code", "msg", "kind"),
    [
        (400, "BackupService.1009", "x", AlreadyReplicatedError),
        (400, None, "The backup has been replicated to cn-east-2", AlreadyReplicatedError),
        (429, "APIG.0308", "throttled", TransientApiError),
        (502, None, None, TransientApiError),
        (408, None, None, TransientApiError),
        (401, "APIGW.0301", "bad", AuthError),
        (403, "CSBS.9009", "unverified", AuthError),
        (401, "APIGW.0303", "clock skew", AuthError),
        (400, "CSBS.9006", "quota", PermanentApiError),
        (400, "CSBS.0001", "service over limit", PermanentApiError),
        (404, "CSBS.3001", "missing", PermanentApiError),
        (302, None, None, PermanentApiError),
    ],
)
def test_error_classification(
    status: int, code: str | None, msg: str | None, kind: type[ApiError]
) -> None:
    body = orjson.dumps({"error_code": code, "error_msg": msg}) if code or msg else b""
    exc = error_for_response(
        status, body, {"X-Request-Id": "req-1"}, table=ErrorTable(), what="POST /x"
    )
    assert type(exc) is kind
    assert (exc.http_status, exc.error_code, exc.request_id) == (status, code, "req-1")
    assert "req-1" in str(exc)


def test_header_request_id_wins_and_retry_after_is_parsed() -> None:
    body = b'{"error_code":"APIG.0308","error_msg":"slow down","request_id":"from-body"}'
    exc = error_for_response(
        429, body, {"X-Request-Id": "from-header", "Retry-After": "7"}, table=ErrorTable(), what="x"
    )
    assert isinstance(exc, TransientApiError)
    assert (exc.request_id, exc.retry_after) == ("from-header", 7.0)
    exc = error_for_response(429, body, {}, table=ErrorTable(), what="x")
    assert exc.request_id == "from-body"


def test_csbs_0001_is_final_and_says_what_to_do() -> None:
    """CSBS.0001 is the *policy* quota: only the user can fix it, so never retried."""
    body = b'{"error_code":"CSBS.0001","error_msg":"service over limit"}'
    exc = error_for_response(400, body, {}, table=ErrorTable(), what="POST /x")
    assert type(exc) is PermanentApiError
    assert "delete unused backup policies" in str(exc)
    assert exc.error_msg == "service over limit"  # the service's own words stay as they were


def test_an_override_table_reclassifies_a_code() -> None:
    table = ErrorTable.with_overrides({"CSBS.9006": Classification.TRANSIENT.value})
    body = b'{"error_code":"CSBS.9006","error_msg":"quota"}'
    assert isinstance(error_for_response(400, body, {}, table=table, what="x"), TransientApiError)


def test_retry_after_values() -> None:
    now = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=30), usegmt=True)
    earlier = format_datetime(now - timedelta(seconds=30), usegmt=True)
    assert parse_retry_after("5", cap_s=60, now=now) == 5.0
    assert parse_retry_after(" 2.5 ", cap_s=60, now=now) == 2.5
    assert parse_retry_after("-3", cap_s=60, now=now) == 0.0
    assert parse_retry_after("600", cap_s=60, now=now) == 60.0
    assert parse_retry_after(later, cap_s=60, now=now) == 30.0
    assert parse_retry_after(earlier, cap_s=60, now=now) == 0.0
    for junk in (None, "", "soon", "nan", "inf", "Mon, 99 Foo 2025"):
        assert parse_retry_after(junk, cap_s=60, now=now) is None
