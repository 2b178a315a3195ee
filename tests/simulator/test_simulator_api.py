"""The CSBS endpoints over loopback HTTP: shapes, status codes, progression, introspection."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio

from orchestrator.models import PROVIDER_ID
from orchestrator.simulator import Simulator
from orchestrator.simulator.records import Item
from tests.helpers.runkit import fresh_items

pytestmark = pytest.mark.asyncio

MakeSimulator = Callable[..., Simulator]
DEST_PROJECT = "e0b97bac-532c-4c51-96fa-4b3a32253be4"


class Api:
    """A thin test client: every call returns (status, headers, parsed JSON body)."""

    def __init__(self, sim: Simulator, session: aiohttp.ClientSession) -> None:
        self.sim = sim
        self.session = session

    async def call(
        self, method: str, path: str, body: object = None, **params: str
    ) -> tuple[int, Any, Any]:
        data = None if body is None else orjson.dumps(body)
        async with self.session.request(
            method, self.sim.base_url + path, data=data, params=params or None
        ) as resp:
            raw = await resp.read()
            assert resp.headers.get("X-Request-Id")
            return resp.status, resp.headers, orjson.loads(raw) if raw else None

    async def replicate(
        self, item: Item, region: str, *, provider: str = PROVIDER_ID, body: object = None
    ) -> tuple[int, Any, Any]:
        path = f"/v1/{item.project_id}/providers/{provider}/checkpoint_items/{item.id}/replicate"
        if body is None:
            body = {
                "replication": {
                    "destination_region": region,
                    "destination_project_id": DEST_PROJECT,
                }
            }
        return await self.call("POST", path, body)


@pytest_asyncio.fixture
async def api(make_simulator: MakeSimulator) -> AsyncIterator[Api]:
    async with (
        make_simulator(items=300, auth="none", copy_wait_s=10, copy_duration_s=100) as sim,
        aiohttp.ClientSession() as session,
    ):
        yield Api(sim, session)


def destination(sim: Simulator, item: Item) -> str:
    return sim.state.capabilities()[item.region][0]


async def test_replicate_answers_all_seven_fields(api: Api) -> None:
    first, second = fresh_items(api.sim, 2)
    region = destination(api.sim, first)
    status, _, body = await api.replicate(first, region)
    assert status == 200
    replication = body["replication"]
    assert replication == {
        "project_id": first.project_id,
        "provider_id": PROVIDER_ID,
        "checkpoint_item_id": first.id,
        "source_region": first.region,
        "destination_region": region,
        "destination_project_id": DEST_PROJECT,
        "replication_record_id": replication["replication_record_id"],
    }
    _, _, other = await api.replicate(second, region)
    assert other["replication"]["replication_record_id"] != replication["replication_record_id"]
    assert api.sim.state.record(replication["replication_record_id"]) is not None


@pytest.mark.parametrize(
    ("replication", "fragment"),
    [
        ({"destination_project_id": DEST_PROJECT}, "destination_region"),
        (
            {"destination_region": "CN_NORTH", "destination_project_id": DEST_PROJECT},
            "destination_region",
        ),
        ({"destination_region": 7, "destination_project_id": DEST_PROJECT}, "destination_region"),
        ({"destination_region": "{dest}"}, "destination_project_id"),
        (
            {"destination_region": "{dest}", "destination_project_id": "not-a-project"},
            "destination_project_id",
        ),
        (
            {
                "destination_region": "{dest}",
                "destination_project_id": DEST_PROJECT,
                "enable_acceleration": "yes",
            },
            "enable_acceleration",
        ),
        (
            {
                "destination_region": "{dest}",
                "destination_project_id": DEST_PROJECT,
                "name": "x" * 256,
            },
            "name",
        ),
    ],
)
async def test_replicate_invalid_body_is_400(
    api: Api, replication: dict[str, Any], fragment: str
) -> None:
    (item,) = fresh_items(api.sim, 1)
    body = {k: destination(api.sim, item) if v == "{dest}" else v for k, v in replication.items()}
    status, _, error = await api.replicate(item, "", body={"replication": body})
    assert status == 400
    assert error["error_code"] == "CSBS.9001"
    assert fragment in error["error_msg"]
    assert api.sim.counters.replications.total() == 0


async def test_replicate_body_that_is_not_json_is_400(api: Api) -> None:
    (item,) = fresh_items(api.sim, 1)
    path = f"/v1/{item.project_id}/providers/{PROVIDER_ID}/checkpoint_items/{item.id}/replicate"
    async with api.session.post(api.sim.base_url + path, data=b"{nope") as resp:
        assert resp.status == 400
        assert (await resp.json())["error_code"] == "CSBS.9001"
    status, _, _ = await api.replicate(item, "", body=["replication"])
    assert status == 400


async def test_replicate_refusals(api: Api) -> None:
    sim = api.sim
    (item,) = fresh_items(sim, 1)
    status, _, error = await api.replicate(item, destination(sim, item), provider="p" * 8)
    assert (status, error["error_code"]) == (400, "CSBS.9001")
    status, _, error = await api.replicate(item, "ap-southeast-1")
    assert (status, error["error_code"]) == (400, "BackupService.1005")
    for state, code in (
        ("protecting", "CSBS.2003"),
        ("error", "CSBS.4000"),
        ("deleted", "CSBS.4000"),
    ):
        bad = next(
            i for p in sim.state.projects for i in sim.state.items_of(p.id) if i.status == state
        )
        status, _, error = await api.replicate(bad, destination(sim, bad))
        assert (status, error["error_code"]) == (400, code), state
    ghost = Item(**{**{f: getattr(item, f) for f in Item.__slots__}, "id": "0" * 8})
    status, _, error = await api.replicate(ghost, destination(sim, item))
    assert (status, error["error_code"]) == (404, "CSBS.3001")


async def test_duplicate_is_refused_and_counted(api: Api) -> None:
    (item,) = fresh_items(api.sim, 1)
    region = destination(api.sim, item)
    assert (await api.replicate(item, region))[0] == 200
    status, _, error = await api.replicate(item, region)
    assert status == 400
    assert error["error_code"] == "BackupService.1009"
    assert "replicated" in error["error_msg"]
    assert error["request_id"]
    api.sim.advance(3600)  # a finished replica still blocks
    assert (await api.replicate(item, region))[0] == 400
    _, _, counters = await api.call("GET", "/_sim/counters")
    assert counters["duplicates_rejected"]["by_pair"] == [
        {"checkpoint_item_id": item.id, "destination_region": region, "count": 2}
    ]
    assert counters["replications"]["by_pair"] == [
        {"checkpoint_item_id": item.id, "destination_region": region, "count": 1}
    ]
    assert counters["replications"]["max_per_pair"] == 1


async def test_already_replicated_items_in_the_estate_are_refused(api: Api) -> None:
    sim = api.sim
    replicated = next(
        (i, r)
        for p in sim.state.projects
        for i in sim.state.items_of(p.id)
        for r in sim.state.records_of(i)
        if r.status(sim.state.now()) == "success"
    )
    item, record = replicated
    status, _, error = await api.replicate(item, record.destination_region)
    assert (status, error["error_code"]) == (400, "BackupService.1009")


async def test_progression_is_visible_on_item_and_records(api: Api) -> None:
    (item,) = fresh_items(api.sim, 1)
    region = destination(api.sim, item)
    _, _, body = await api.replicate(item, region)
    record_id = body["replication"]["replication_record_id"]
    item_path = f"/v1/{item.project_id}/checkpoint_items/{item.id}"
    records_path = f"/v1/{item.project_id}/replication_records"

    async def observe() -> tuple[str, str, str]:
        _, _, got = await api.call("GET", item_path)
        one = got["checkpoint_item"]
        _, _, listed = await api.call("GET", records_path, checkpoint_item_id=item.id)
        (embedded,) = one["replication_records"]
        assert embedded["id"] == record_id
        return (
            one["extend_info"]["copy_status"],
            embedded["status"],
            listed["replication_records"][0]["status"],
        )

    # The item speaks its own vocabulary, the records theirs (two fields, two vocabularies).
    assert await observe() == ("waiting_copy", "waiting_replicate", "waiting_replicate")
    await api.call("POST", "/_sim/advance", {"seconds": 10})
    assert await observe() == ("copying", "replicating", "replicating")
    await api.call("POST", "/_sim/advance", {"seconds": 100})
    assert await observe() == ("success",) * 3
    _, _, got = await api.call("GET", item_path)
    record = got["checkpoint_item"]["replication_records"][0]
    assert record["extra_info"]["progress"] == 100
    assert record["destination_checkpoint_item_id"]


async def test_failed_copies_show_fail_and_allow_a_new_replication(api: Api) -> None:
    (item,) = fresh_items(api.sim, 1)
    region = destination(api.sim, item)
    status, _, faults = await api.call("POST", "/_sim/faults", {"copy_fail_rate": 1.0})
    assert (status, faults["faults"]["copy_fail_rate"]) == (200, 1.0)
    await api.replicate(item, region)
    await api.call("POST", "/_sim/advance", {"seconds": 500})
    _, _, got = await api.call("GET", f"/v1/{item.project_id}/checkpoint_items/{item.id}")
    extend = got["checkpoint_item"]["extend_info"]
    assert extend["copy_status"] == "fail"
    assert extend["fail_code"]["Code"]
    _, _, failed = await api.call(
        "GET",
        f"/v1/{item.project_id}/replication_records",
        status="fail",
        destination_region=region,
    )
    assert [r["source_checkpoint_item_id"] for r in failed["replication_records"]].count(
        item.id
    ) == 1
    await api.call("POST", "/_sim/faults", {"copy_fail_rate": 0})
    assert (await api.replicate(item, region))[0] == 200
    assert api.sim.counters.replications[(item.id, region)] == 2


async def test_capabilities(api: Api) -> None:
    project = api.sim.state.projects[0].id
    status, _, body = await api.call("GET", f"/v1/{project}/replication_capabilities")
    assert status == 200
    regions = {r["name"]: r["replication_destinations"] for r in body["regions"]}
    assert set(regions) == set(api.sim.config.regions)
    assert regions["cn-north-1"] == ["cn-east-2", "cn-south-1", "cn-east-3"]


async def test_list_filter_sort_page_and_count(api: Api) -> None:
    project = api.sim.state.projects[0].id
    base = f"/v1/{project}/checkpoint_items"
    _, _, everything = await api.call("GET", base)
    items = everything["checkpoint_items"]
    assert len(items) == 100  # 300 items over 3 projects
    created = [i["created_at"] for i in items]
    assert created == sorted(created, reverse=True)
    seen: list[str] = []
    marker: str | None = None
    while True:
        params = {"limit": "30", "status": "available", "sort": "name:asc"}
        if marker:
            params["marker"] = marker
        _, _, page = await api.call("GET", base, **params)
        batch = page["checkpoint_items"]
        if not batch:
            break
        assert all(i["status"] == "available" for i in batch)
        seen.extend(i["name"] for i in batch)
        marker = batch[-1]["id"]
    assert seen == sorted(seen)
    _, _, counted = await api.call("GET", f"{base}/count", status="available")
    assert counted == {"count": len(seen)}
    _, _, total = await api.call("GET", f"{base}/count")
    assert total == {"count": 100}
    name = items[0]["name"]
    _, _, fuzzy = await api.call("GET", base, name=name[3:].upper())
    assert name in {i["name"] for i in fuzzy["checkpoint_items"]}
    some = items[5]
    # resource_name matches fuzzily too (part of it, any case), as the reference says.
    resource_name = some["extend_info"]["resource_name"]
    _, _, by_name = await api.call("GET", base, resource_name=resource_name[2:-1].upper())
    assert some["id"] in {i["id"] for i in by_name["checkpoint_items"]}
    _, _, by_resource = await api.call("GET", base, resource_id=some["resource_id"])
    assert [i["id"] for i in by_resource["checkpoint_items"]] == [some["id"]]
    _, _, window = await api.call(
        "GET", base, start_time=items[10]["created_at"], end_time=items[3]["created_at"]
    )
    assert [i["id"] for i in window["checkpoint_items"]] == [i["id"] for i in items[3:11]]
    for bad in (
        {"limit": "0"},
        {"limit": "abc"},
        {"sort": "size:asc"},
        {"marker": "nope"},
        {"start_time": "yesterday"},
    ):
        status, _, error = await api.call("GET", base, **bad)
        assert (status, error["error_code"]) == (400, "CSBS.9001"), bad


async def test_get_one_item_has_realistic_fields(api: Api) -> None:
    item = api.sim.state.items_of(api.sim.state.projects[1].id)[0]
    status, _, body = await api.call("GET", f"/v1/{item.project_id}/checkpoint_items/{item.id}")
    assert status == 200
    got = body["checkpoint_item"]
    for key in (
        "id",
        "checkpoint_id",
        "name",
        "description",
        "resource_id",
        "resource_type",
        "status",
        "created_at",
        "updated_at",
        "protected_at",
        "backup_data",
        "extend_info",
        "tags",
        "replication_records",
    ):
        assert key in got, key
    for key in (
        "copy_status",
        "copy_from",
        "progress",
        "fail_code",
        "fail_reason",
        "resource_name",
        "resource_type",
        "size",
        "finished_at",
    ):
        assert key in got["extend_info"], key
    assert got["resource_type"] == "OS::Nova::Server"
    assert got["source_region"] == item.region
    status, _, error = await api.call(
        "GET", f"/v1/{api.sim.state.projects[0].id}/checkpoint_items/{item.id}"
    )
    assert (status, error["error_code"]) == (404, "CSBS.3001")


async def test_replication_records_filters(api: Api) -> None:
    one, two = fresh_items(api.sim, 2)
    region_one, region_two = api.sim.state.capabilities()[one.region][:2]
    await api.replicate(one, region_one)
    await api.replicate(two, region_two)
    path = f"/v1/{one.project_id}/replication_records"
    _, _, by_item = await api.call("GET", path, checkpoint_item_id=two.id)
    assert [r["destination_region"] for r in by_item["replication_records"]] == [region_two]
    assert by_item["count"] == 1
    _, _, by_region = await api.call(
        "GET", path, destination_region=region_one, status="waiting_replicate"
    )
    ids = [r["source_checkpoint_item_id"] for r in by_region["replication_records"]]
    assert one.id in ids
    assert two.id not in ids
    _, _, newest = await api.call("GET", path, limit="1")
    assert newest["replication_records"][0]["source_checkpoint_item_id"] == two.id
    assert newest["count"] >= 2


async def test_sim_items_adds_replicable_backups(api: Api) -> None:
    project = api.sim.state.projects[2]
    status, _, added = await api.call("POST", "/_sim/items", {"project_id": project.id, "count": 2})
    assert status == 200
    new_ids = [i["id"] for i in added["checkpoint_items"]]
    _, _, listed = await api.call("GET", f"/v1/{project.id}/checkpoint_items", limit="2")
    assert {i["id"] for i in listed["checkpoint_items"]} == set(new_ids)
    item = api.sim.state.item(project.id, new_ids[0])
    assert (await api.replicate(item, destination(api.sim, item)))[0] == 200
    status, _, error = await api.call("POST", "/_sim/items", {"project_id": "nope"})
    assert (status, error["error_code"]) == (400, "CSBS.9001")


async def test_counters_by_path_and_status(api: Api) -> None:
    (item,) = fresh_items(api.sim, 1)
    await api.replicate(item, destination(api.sim, item))
    await api.replicate(item, destination(api.sim, item))
    await api.call("GET", f"/v1/{item.project_id}/checkpoint_items/count")
    await api.call("GET", "/no/such/path")
    _, _, counters = await api.call("GET", "/_sim/counters")
    requests = counters["requests"]
    replicate = next(k for k in requests if k.endswith("/replicate"))
    assert requests[replicate] == {"200": 1, "400": 1}
    assert requests["GET /v1/{project_id}/checkpoint_items/count"] == {"200": 1}
    assert requests["unknown"] == {"404": 1}
    arrivals = counters["replicate_arrivals"]
    assert sum(arrivals["bins"]) == 2  # only replicate calls, refused ones included
    assert arrivals["max_per_second"] == 2


async def test_unknown_path_answers_in_the_error_shape(api: Api) -> None:
    status, headers, body = await api.call("GET", "/v2/whatever")
    assert status == 404
    assert body["error_code"] == "APIGW.0101"
    assert headers["X-Request-Id"] == body["request_id"]


async def test_sim_info_and_advance(api: Api) -> None:
    _, _, info = await api.call("GET", "/_sim/info")
    assert info["base_url"] == api.sim.base_url
    assert len(info["projects"]) == 3
    status, _, body = await api.call("POST", "/_sim/advance", {"seconds": -1})
    assert status == 400
    before = api.sim.clock.now()
    _, _, body = await api.call("POST", "/_sim/advance", {"seconds": 60})
    assert body["now_s"] == before + 60


async def test_a_simulator_runs_once(make_simulator: MakeSimulator) -> None:
    sim = make_simulator(items=3)
    async with sim:
        pass
    with pytest.raises(RuntimeError):
        async with sim:
            pass
    with pytest.raises(RuntimeError):
        _ = sim.base_url
