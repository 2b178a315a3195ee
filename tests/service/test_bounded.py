"""Everything a server sends is bounded: a hostile aiohttp server on 127.0.0.1 sends huge
bodies, a listing whose marker loops, a ``Retry-After`` of a year, 100k replication records
for one item. Each is capped, reported in the error (which the caller logs), and survived."""

from __future__ import annotations

import email.utils
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from orchestrator.engine.retry import RetryPolicy, retrying
from orchestrator.errors import PermanentApiError, TransientApiError, TransportError
from orchestrator.models import ReplicationTask
from orchestrator.service.cbr import CbrClient
from orchestrator.service.client import CsbsClient
from orchestrator.service.settings import ClientSettings

pytestmark = pytest.mark.anyio

PROJECT = "a" * 32
ITEM = "8b0851a8-adf3-4f4c-a914-dead6c1d8d9d"  # 10 replication records
CROWDED_ITEM = "9c1962b9-beb4-4f5d-ba25-ebbe7d2e9e0e"  # 100,000 of them
LIMIT = 1 << 20  # the client's body cap in these tests
YEAR_S = 365 * 24 * 3600
LIVE_RECORD = "042cd047-a7c9-4905-a859-402950ac8440"


async def _big(request: web.Request) -> web.Response:
    return web.Response(body=b"x" * (LIMIT + 1), content_type="application/json")


async def _streamed(request: web.Request) -> web.StreamResponse:
    """No Content-Length: chunks until well past the cap (the client must stop reading)."""
    resp = web.StreamResponse()
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    chunk = b" " * 65536
    for _ in range(4 * LIMIT // len(chunk)):
        await resp.write(chunk)
    await resp.write_eof()
    return resp


async def _looping_listing(request: web.Request) -> web.Response:
    """Full pages for ever: marker None -> A -> B -> A -> B ..."""
    limit = int(request.query["limit"])
    last = "B" if request.query.get("marker") == "A" else "A"
    page = [{"id": f"item-{i}"} for i in range(limit - 1)] + [{"id": last}]
    key = "backups" if "/v3/" in request.path else "checkpoint_items"  # CBR or CSBS
    return web.json_response({key: page})


async def _year_503(request: web.Request) -> web.Response:
    header = request.match_info["form"]
    later = datetime.now(UTC) + timedelta(days=365)
    value = email.utils.format_datetime(later, usegmt=True) if header == "date" else str(YEAR_S)
    return web.Response(status=503, headers={"Retry-After": value}, text="busy")


def _records(count: int) -> list[dict[str, str]]:
    """``count`` replication records of the item, all failed or elsewhere but the last."""
    records = [
        {"id": f"r{i}", "destination_region": "cn-east-2", "status": "failed"}
        for i in range(count - 1)
    ]
    records.append({"id": LIVE_RECORD, "destination_region": "cn-east-2", "status": "available"})
    return records


async def _item_with_records(request: web.Request) -> web.Response:
    item = request.match_info["item"]
    count = 100_000 if item == CROWDED_ITEM else 10
    body = {"checkpoint_item": {"id": item, "replication_records": _records(count)}}
    return web.Response(body=orjson.dumps(body), content_type="application/json")


@pytest.fixture
async def hostile() -> AsyncIterator[str]:
    app = web.Application()
    prefix = f"/v1/{PROJECT}/checkpoint_items"
    app.router.add_get(f"{prefix}/big", _big)
    app.router.add_get(f"{prefix}/streamed", _streamed)
    app.router.add_get(prefix + "/year-{form}", _year_503)
    app.router.add_get(prefix + "/{item}", _item_with_records)
    app.router.add_get(prefix, _looping_listing)
    app.router.add_get(f"/v3/{PROJECT}/backups", _looping_listing)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


def _client(base: str, **kw: int) -> CsbsClient:
    return CsbsClient(ClientSettings(endpoint=base, max_body_bytes=kw.get("limit", LIMIT)))


@pytest.mark.parametrize(("path", "said"), [("big", "declared"), ("streamed", "streamed")])
async def test_an_answer_over_the_cap_is_not_read_and_the_client_goes_on(
    hostile: str, path: str, said: str
) -> None:
    async with _client(hostile) as client:
        with pytest.raises(TransportError, match=f"answer too large .*{said}") as caught:
            await client.get_item(PROJECT, path)
        # Like a cut answer: a POST's outcome would be unknown, so it is reconciled.
        assert caught.value.maybe_applied
        # The connection with the unread body is dropped, not reused: the client still works.
        assert await client.find_replication(_task()) == LIVE_RECORD


async def test_a_listing_whose_marker_loops_stops_with_a_clear_error(hostile: str) -> None:
    items: list[object] = []

    async def list_all(client: CsbsClient) -> None:
        async for item in client.iter_items(PROJECT, page_size=10):
            items.append(item)

    async with _client(hostile) as client:
        with pytest.raises(PermanentApiError, match=r"did not advance.*'A', after 3 pages"):
            await list_all(client)
    assert len(items) == 3 * 10  # pages A, B, A: the loop is seen on the third


async def test_a_cbr_listing_whose_marker_loops_stops_too(hostile: str) -> None:
    """CBR pages its backups the same way: one paging loop serves both services."""
    backups: list[object] = []

    async def list_all(client: CbrClient) -> None:
        async for backup in client.iter_items(PROJECT, page_size=10):
            backups.append(backup)

    async with CbrClient(ClientSettings(endpoint=hostile, max_body_bytes=LIMIT)) as client:
        with pytest.raises(PermanentApiError, match=r"/backups: paging did not advance.*'A'"):
            await list_all(client)
    assert len(backups) == 3 * 10  # pages A, B, A: the loop is seen on the third


@pytest.mark.parametrize("form", ["seconds", "date"])
async def test_a_retry_after_of_a_year_waits_the_cap_at_most(hostile: str, form: str) -> None:
    sleeps: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    policy = RetryPolicy(max_attempts=3, max_elapsed_s=1e9, retry_after_cap_s=60.0)

    async def get_with_retries(client: CsbsClient) -> None:
        async for attempt in retrying(policy, sleep=fake_sleep):
            with attempt:
                await client.get_item(PROJECT, f"year-{form}")

    async with _client(hostile) as client:
        with pytest.raises(TransientApiError) as caught:
            await get_with_retries(client)
    assert caught.value.retry_after is not None
    assert 59 <= caught.value.retry_after <= 60  # the client's own cap (retry_after_cap_s)
    assert len(sleeps) == 2
    assert all(s <= 60.0 for s in sleeps)


async def test_100k_records_of_one_item_are_searched_within_the_body_cap(hostile: str) -> None:
    """The live record is the last of 100k: found (a cap on the count could miss it and send
    the pair twice); the same list over a smaller body cap is refused, not half-read."""
    async with _client(hostile, limit=64 << 20) as client:
        assert await client.find_replication(_task(CROWDED_ITEM)) == LIVE_RECORD
    async with _client(hostile, limit=LIMIT) as client:
        with pytest.raises(TransportError, match="answer too large"):
            await client.find_replication(_task(CROWDED_ITEM))


def _task(item: str = ITEM) -> ReplicationTask:
    return ReplicationTask(item, PROJECT, "cn-east-2", "b" * 32)
