"""Every fault knob over loopback: injected errors, broken bodies, throttling, capacity,
latency, dropped connections before and after applying, and run-time changes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson
import pytest

from orchestrator.models import PROVIDER_ID
from orchestrator.simulator import Simulator
from orchestrator.simulator.records import Item
from tests.helpers.runkit import fresh_items

pytestmark = pytest.mark.asyncio

MakeSimulator = Callable[..., Simulator]
DEST_PROJECT = "a" * 32


class FakeMonotonic:
    """Real time for the token buckets, but moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def replicate_url(sim: Simulator, item: Item) -> str:
    return (
        f"{sim.base_url}/v1/{item.project_id}/providers/{PROVIDER_ID}"
        f"/checkpoint_items/{item.id}/replicate"
    )


def replicate_body(sim: Simulator, item: Item) -> bytes:
    region = sim.state.capabilities()[item.region][0]
    return orjson.dumps(
        {"replication": {"destination_region": region, "destination_project_id": DEST_PROJECT}}
    )


async def post(
    session: aiohttp.ClientSession, sim: Simulator, item: Item
) -> tuple[int, Any, bytes]:
    async with session.post(replicate_url(sim, item), data=replicate_body(sim, item)) as resp:
        return resp.status, resp.headers, await resp.read()


async def get_count(session: aiohttp.ClientSession, sim: Simulator) -> int:
    url = f"{sim.base_url}/v1/{sim.state.projects[0].id}/checkpoint_items/count"
    async with session.get(url) as resp:
        return resp.status


async def test_injected_503_and_500_apply_nothing(make_simulator: MakeSimulator) -> None:
    async with (
        make_simulator(auth="none", p503=1.0, retry_after_s=2.5) as sim,
        aiohttp.ClientSession() as session,
    ):
        (item,) = fresh_items(sim, 1)
        status, headers, body = await post(session, sim, item)
        assert status == 503
        assert headers["Retry-After"] == "3"
        assert "error_code" not in orjson.loads(body)  # CSBS documents no code for a 503
        sim.update_faults(p503=0.0, p500=1.0)
        status, _, body = await post(session, sim, item)
        assert status == 500
        assert orjson.loads(body)["error_code"] == "CSBS.9999"
        assert not sim.state.records_of(item)
        assert sim.counters.faults == {"p503": 1, "p500": 1}


async def test_malformed_bodies_are_not_json(make_simulator: MakeSimulator) -> None:
    async with (
        make_simulator(auth="none", p_malformed=1.0) as sim,
        aiohttp.ClientSession() as session,
    ):
        statuses = set()
        for item in fresh_items(sim, 12):
            status, headers, body = await post(session, sim, item)
            statuses.add((status, headers["Content-Type"]))
            assert headers["X-Request-Id"]
            with pytest.raises(ValueError):  # noqa: PT011 - orjson raises a ValueError subclass
                orjson.loads(body)
        assert {s for s, _ in statuses} <= {500, 502, 503}
        assert "text/html" in {c for _, c in statuses}
        assert len(statuses) > 1
        assert sim.counters.replications.total() == 0


async def test_throttling_per_project_token_bucket(make_simulator: MakeSimulator) -> None:
    clock = FakeMonotonic()
    async with (
        make_simulator(
            auth="none", throttle_rate=2.0, throttle_burst=3, retry_after_s=1, monotonic=clock
        ) as sim,
        aiohttp.ClientSession() as session,
    ):
        items = fresh_items(sim, 5)
        statuses = [(await post(session, sim, item))[0] for item in items[:3]]
        assert statuses == [200, 200, 200]
        status, headers, body = await post(session, sim, items[3])
        assert status == 429
        assert headers["Retry-After"] == "1"
        error = orjson.loads(body)
        assert error["error_code"] == "APIG.0308"
        assert error["error_msg"] == (
            "The throttling threshold has been reached: policy user over ratelimit, "
            "limit:2, time:1 second"
        )
        assert error["request_id"] == headers["X-Request-Id"]
        # Another project has its own bucket.
        assert (await post(session, sim, fresh_items(sim, 1, project=1)[0]))[0] == 200
        clock.now += 0.5  # one token back at 2/s
        assert (await post(session, sim, items[3]))[0] == 200
        assert (await post(session, sim, items[4]))[0] == 429
        sim.update_faults(retry_after_s=None)
        _, headers, _ = await post(session, sim, items[4])
        assert "Retry-After" not in headers
        assert sim.counters.faults["throttled"] == 3


async def test_throttling_has_no_retry_after_by_default_and_its_rate_can_change_mid_run(
    make_simulator: MakeSimulator,
) -> None:
    """The gateway as Huawei's behaves (no ``Retry-After``), and the drop/recover benchmark's
    knob: ``POST /_sim/faults {"throttle_rate": ...}`` changes the rate of a running bucket."""
    clock = FakeMonotonic()
    async with (
        make_simulator(auth="none", throttle_rate=4.0, throttle_burst=1, monotonic=clock) as sim,
        aiohttp.ClientSession() as session,
    ):
        items = fresh_items(sim, 6)
        assert (await post(session, sim, items[0]))[0] == 200
        status, headers, _ = await post(session, sim, items[1])
        assert status == 429
        assert "Retry-After" not in headers
        async with session.post(f"{sim.base_url}/_sim/faults", json={"throttle_rate": 1.0}) as r:
            assert r.status == 200
        assert (await post(session, sim, items[1]))[0] == 200  # a new bucket, full
        clock.now += 0.5  # half a token at 1/s (it would be two at the old 4/s)
        status, _, body = await post(session, sim, items[2])
        assert status == 429
        assert orjson.loads(body)["error_msg"].endswith("limit:1, time:1 second")
        clock.now += 0.5
        assert (await post(session, sim, items[2]))[0] == 200


async def test_capacity_limit_answers_503(make_simulator: MakeSimulator) -> None:
    async with (
        make_simulator(
            auth="none",
            max_in_flight=2,
            copy_wait_s=5,
            copy_duration_s=5,
            seed=11,
            retry_after_s=4,
        ) as sim,
        aiohttp.ClientSession() as session,
    ):
        sim.advance(3600)  # the estate's own copies finish
        items = fresh_items(sim, 3)
        assert [(await post(session, sim, item))[0] for item in items[:2]] == [200, 200]
        status, headers, body = await post(session, sim, items[2])
        assert (status, orjson.loads(body).get("error_code")) == (503, None)
        assert headers["Retry-After"] == "4"
        assert sim.counters.faults["capacity"] == 1
        sim.advance(10)
        assert (await post(session, sim, items[2]))[0] == 200


async def test_drop_before_apply_changes_nothing(make_simulator: MakeSimulator) -> None:
    async with (
        make_simulator(auth="none", p_drop=1.0) as sim,
        aiohttp.ClientSession() as session,
    ):
        (item,) = fresh_items(sim, 1)
        with pytest.raises(aiohttp.ClientConnectionError):
            await post(session, sim, item)
        assert not sim.state.records_of(item)
        sim.update_faults(p_drop=0.0)
        assert (await post(session, sim, item))[0] == 200
        route = next(r for r, _ in sim.counters.requests if r.endswith("/replicate"))
        assert sim.counters.requests_for(route, "dropped") == 1


async def test_apply_then_drop_changes_state_but_gives_no_answer(
    make_simulator: MakeSimulator,
) -> None:
    async with (
        make_simulator(auth="none", p_apply_drop=1.0) as sim,
        aiohttp.ClientSession() as session,
    ):
        (item,) = fresh_items(sim, 1)
        with pytest.raises(aiohttp.ClientConnectionError) as cut:
            await post(session, sim, item)
        assert isinstance(cut.value, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError)
        (record,) = sim.state.records_of(item)
        assert sim.counters.replications[(item.id, record.destination_region)] == 1
        async with session.post(
            f"{sim.base_url}/_sim/faults", data=orjson.dumps({"p_apply_drop": 0})
        ) as resp:
            assert resp.status == 200
        status, _, body = await post(session, sim, item)  # the blind resend is refused
        assert (status, orjson.loads(body)["error_code"]) == (400, "BackupService.1009")


async def test_faults_on_replicate_spare_the_reads(make_simulator: MakeSimulator) -> None:
    async with (
        make_simulator(auth="none", p503=1.0) as sim,
        aiohttp.ClientSession() as session,
    ):
        assert await get_count(session, sim) == 200
        assert (await post(session, sim, fresh_items(sim, 1)[0]))[0] == 503
        sim.update_faults(faults_on="all")
        assert await get_count(session, sim) == 503


async def test_latency_fixed_and_jitter(make_simulator: MakeSimulator) -> None:
    async with (
        make_simulator(auth="none", latency_s=0.03, latency_jitter_s=0.01) as sim,
        aiohttp.ClientSession() as session,
    ):
        started = time.perf_counter()
        assert (await post(session, sim, fresh_items(sim, 1)[0]))[0] == 200
        assert time.perf_counter() - started >= 0.03


async def test_latency_spares_reads_by_default(make_simulator: MakeSimulator) -> None:
    async with (
        make_simulator(auth="none", latency_s=60) as sim,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
    ):
        assert await get_count(session, sim) == 200  # would time out if it waited 60 s


async def test_same_seed_same_faults(make_simulator: MakeSimulator) -> None:
    async def run() -> list[int]:
        async with (
            make_simulator(auth="none", seed=5, p503=0.3, p500=0.2) as sim,
            aiohttp.ClientSession() as session,
        ):
            return [(await post(session, sim, item))[0] for item in fresh_items(sim, 30)]

    first = await run()
    assert first == await run()
    assert {200, 500, 503} <= set(first)


async def test_storm_at_run_time_and_bad_knobs(make_simulator: MakeSimulator) -> None:
    async with (
        make_simulator(auth="none") as sim,
        aiohttp.ClientSession() as session,
    ):
        first, second = fresh_items(sim, 2)
        assert (await post(session, sim, first))[0] == 200
        faults_url = f"{sim.base_url}/_sim/faults"
        async with session.post(faults_url, data=orjson.dumps({"p503": 1})) as resp:
            assert (await resp.json())["faults"]["p503"] == 1.0
        assert (await post(session, sim, second))[0] == 503
        async with session.get(faults_url) as resp:
            assert (await resp.json())["faults"]["p503"] == 1.0
        for bad in ({"p503": 2}, {"nonsense": 1}, {"faults_on": "sometimes"}, {"p500": True}):
            async with session.post(faults_url, data=orjson.dumps(bad)) as resp:
                assert resp.status == 400, bad
                assert (await resp.json())["error_code"] == "SIM.0400"
        assert sim.faults.p503 == 1.0
