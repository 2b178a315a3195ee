"""The CSBS calls over loopback against the simulator (and a stub server for answers the
simulator never gives).

Every exception a test sees goes through :func:`assert_no_secrets`: no SK, token or
password may appear in any message, repr or chained cause.
"""

from __future__ import annotations

import socket

import pytest
from aiohttp import web

from orchestrator.errors import (
    AlreadyReplicatedError,
    ApiError,
    ErrorTable,
    PermanentApiError,
    TransientApiError,
    TransportError,
)
from orchestrator.models import ReplicationTask
from orchestrator.service.client import CsbsClient
from orchestrator.service.settings import ClientSettings, Timeouts
from orchestrator.simulator.csbs import LIST_ITEMS, REPLICATE
from tests.conftest import MakeSimulator
from tests.helpers.clientkit import (
    aksk,
    client_for,
    raises,
    sim_secrets,
    stub_server,
)
from tests.helpers.runkit import fresh_items, task_for

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
