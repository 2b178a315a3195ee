"""One endpoint per source region, as the real service has (issue 15): the client's
``[connection.endpoints]`` table, and a simulator that serves each region at its own port."""

from __future__ import annotations

import argparse
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest

from orchestrator.cli.connection import connect
from orchestrator.cli.context import context_of
from orchestrator.config.settings import RunSettings, resolve
from orchestrator.engine.job import run_job
from orchestrator.engine.job_spec import JobSpec
from orchestrator.engine.pool_types import Replicator
from orchestrator.errors import ConfigError, PermanentApiError
from orchestrator.service.aksk import AkSkSigner
from orchestrator.service.auth import Secret
from orchestrator.service.client import CsbsClient
from orchestrator.service.settings import ClientSettings
from orchestrator.simulator import Simulator, SimulatorConfig
from tests.conftest import MakeSimulator
from tests.helpers.runkit import FAST, estate_manifest, final_results

pytestmark = pytest.mark.anyio


def _client(sim: Simulator, **settings: object) -> CsbsClient:
    signer = AkSkSigner(sim.config.ak, Secret(sim.config.sk))
    return CsbsClient(ClientSettings(**settings), signer)  # type: ignore[arg-type]


def test_a_region_in_the_table_wins_then_the_single_endpoint_then_the_template() -> None:
    settings = ClientSettings(
        endpoint="http://127.0.0.1:1", endpoints={"cn-north-4": "http://127.0.0.1:2/"}
    )
    assert settings.endpoint_for("cn-north-4") == "http://127.0.0.1:2"
    assert settings.endpoint_for("cn-east-3") == "http://127.0.0.1:1"
    template = ClientSettings(region="cn-east-3", endpoints={"cn-north-4": "https://h:2"})
    assert template.endpoint_for(None) == "https://csbs.cn-east-3.myhuaweicloud.com"
    assert template.endpoint_for("cn-north-4") == "https://h:2"
    # A regional endpoint obeys the transport policy as the single one does.
    plain = ClientSettings(region="cn-east-3", endpoints={"cn-north-4": "http://h:2"})
    with pytest.raises(ConfigError, match="plain HTTP"):
        plain.endpoint_for("cn-north-4")


def test_the_endpoints_table_of_the_config_file() -> None:
    config = {"connection": {"endpoints": {"cn-north-4": "https://csbs.example.internal"}}}
    settings = resolve(None, {}, config, config_path="c.toml")
    assert settings.connection.endpoints == {"cn-north-4": "https://csbs.example.internal"}
    assert settings.public()["endpoints"] == {"cn-north-4": "https://csbs.example.internal"}
    for bad, message in (
        ({"North": "https://h"}, "not a region name"),
        ({"cn-north-4": "ftp://h"}, "http"),
        ({"cn-north-4": "https://user:pw@h"}, "credentials in the URL"),
        ("https://h", "table of region = URL"),
    ):
        with pytest.raises(ConfigError, match=message) as caught:
            resolve(None, {}, {"connection": {"endpoints": bad}}, config_path="c.toml")
        assert "c.toml: [connection.endpoints]" in str(caught.value)
        assert "pw@" not in str(caught.value)


async def test_each_region_is_served_at_its_own_endpoint(make_simulator: MakeSimulator) -> None:
    async with make_simulator(items=60) as sim:
        urls = sim.region_urls
        assert set(urls) == set(sim.config.regions)
        assert len({*urls.values(), sim.base_url}) == len(urls) + 1
        assert sim.info()["endpoints"] == urls
        north = next(p for p in sim.state.projects if p.region == "cn-north-4")
        east = next(p for p in sim.state.projects if p.region == "cn-east-3")
        async with _client(sim, endpoints=urls) as client:
            capabilities = await client.capabilities(north.id, region="cn-north-4")
            assert list(capabilities) == ["cn-north-4"]  # its own region only
            (item, *_) = [i async for i in client.iter_items(north.id, region="cn-north-4")]
            assert "project_id" not in item  # shaped as the real ones
            assert "source_region" not in item
            with pytest.raises(PermanentApiError, match="not in region cn-north-4"):
                await client.count_items(east.id, region="cn-north-4")
        async with _client(sim, endpoint=sim.base_url) as shared:
            everything = await shared.capabilities(north.id)
            assert set(everything) == set(sim.config.regions)


async def test_a_multi_region_manifest_end_to_end(
    make_simulator: MakeSimulator, tmp_path: Path
) -> None:
    """No single endpoint at all: each pair must reach its source region's own endpoint
    (a wrong one answers 400, none at all is a configuration error)."""
    async with make_simulator(items=90) as sim:
        manifest = tmp_path / "m.csv"
        rows = estate_manifest(sim, manifest)
        regions = {p.region for p in sim.state.projects}
        assert len(regions) == 3

        def factory() -> AbstractAsyncContextManager[Replicator]:
            return _client(sim, endpoints=sim.region_urls)

        spec = JobSpec(
            ledger=tmp_path / "l.jsonl",
            settings=RunSettings.of(endpoints=sim.region_urls, **FAST),
            manifest=manifest,
            handle_signals=False,
        )
        await run_job(spec, factory)
    results = final_results(tmp_path / "l.jsonl")
    assert len(results) == rows
    statuses = {r["status"] for r in results.values()}
    assert statuses <= {"replicated", "already_replicated"}
    assert {r["source_region"] for r in results.values()} == regions


async def test_the_simulate_flag_gives_every_region_its_endpoint() -> None:
    """``--simulate`` hands the client the per-region table (and the shared URL beside it)."""
    args = argparse.Namespace(simulate=True, config=None, sim_seed=1)
    ctx = context_of(args, env={})
    assert ctx.settings == RunSettings()
    async with connect(ctx) as conn:
        endpoints = ClientSettings.from_settings(conn.settings).endpoints
        assert set(endpoints) == set(SimulatorConfig().regions)
        project = conn.settings.connection.project_id
        assert project is not None
        async with conn.client() as client:
            # projects[0] is the first region's: its own endpoint knows it.
            first = SimulatorConfig().regions[0]
            assert await client.count_items(project, region=first) > 0
            with pytest.raises(PermanentApiError, match="not in region"):
                await client.count_items(project, region=SimulatorConfig().regions[1])
