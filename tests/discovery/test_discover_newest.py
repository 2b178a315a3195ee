"""``select = "newest"``: per resource and region only the newest backup, when the region holds
nothing as new, the largest lag removed first; on fixed items and on an aged simulated estate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orchestrator.cli.main import main
from orchestrator.discovery.discover import discover
from orchestrator.discovery.rules import Destination as Dest
from orchestrator.discovery.rules import DiscoverConfig, Rule, Source
from orchestrator.errors import ConfigError
from orchestrator.insight.coverage import CoverageFold, State
from orchestrator.insight.coverage_input import observe
from orchestrator.simulator.views import format_time
from tests.conftest import MakeSimulator
from tests.discovery.test_discover import (
    DEST_B,
    EAST2,
    SOUTH1,
    SRC,
    FakeLister,
    client_for,
    fake_item,
)
from tests.helpers.env import use_sim_credentials
from tests.helpers.simthread import simulator_thread

DAY = 86400.0
T0 = 1_800_000_000.0


def backup(n: int, resource: str, age_days: float, *records: dict[str, Any]) -> dict[str, Any]:
    return fake_item(
        n,
        resource_id=resource,
        created_at=format_time(T0 - age_days * DAY),
        replication_records=list(records),
    )


def copied(region: str = EAST2, status: str = "success") -> dict[str, Any]:
    return {"destination_region": region, "status": status}


NEWEST_TO_EAST2 = DiscoverConfig((SRC,), (Rule((Dest(EAST2, DEST_B),)),), select="newest")


@pytest.mark.anyio
async def test_only_the_newest_per_resource_largest_lag_first() -> None:
    items = [
        backup(1, "a", 0),  # a: copy of day 1 held -> send day 0 (removes 1 day)
        backup(2, "a", 1, copied()),
        backup(3, "a", 2),
        backup(4, "b", 0.5),  # b: copy of day 5 held -> send 0.5 (removes 4.5 days)
        backup(5, "b", 5, copied()),
        backup(6, "c", 3),  # c: never copied -> first
        backup(7, "c", 4),
        backup(8, "d", 0, copied(status="replicating")),  # d: newest being copied -> nothing
        backup(9, "d", 1),
    ]
    found = await discover(FakeLister(items), NEWEST_TO_EAST2)
    assert [t.checkpoint_item_id[-1] for t in found.tasks] == ["6", "4", "1"]
    summary = found.summaries[0]
    assert summary.pairs == 3
    assert summary.superseded == 3  # 3 (older than 1), 7 (older than 6), 9 (older than 8)
    assert "older than a newer backup" in summary.line()
    everything = await discover(FakeLister(items), DiscoverConfig((SRC,), NEWEST_TO_EAST2.rules))
    assert len(everything.tasks) == 6  # "all": every backup lacking a copy


@pytest.mark.anyio
async def test_a_region_holding_a_newer_copy_gets_nothing() -> None:
    items = [backup(1, "a", 0, copied(SOUTH1)), backup(2, "a", 3)]
    config = DiscoverConfig(
        (SRC,), (Rule((Dest(EAST2, DEST_B), Dest(SOUTH1, DEST_B))),), select="newest"
    )
    found = await discover(FakeLister(items), config)
    assert [(t.checkpoint_item_id[-1], t.destination_region) for t in found.tasks] == [("1", EAST2)]


def test_select_from_config_and_flags() -> None:
    base = {
        "discover": {
            "select": "newest",
            "rules": [{"to": [{"region": EAST2, "project_id": DEST_B}]}],
        }
    }
    config = DiscoverConfig.from_config(base, default_source=SRC)
    assert config.select == "newest"
    assert config.with_overrides(filters={}, select="all").select == "all"
    assert config.with_overrides(filters={}).select == "newest"
    with pytest.raises(ConfigError, match="select"):
        DiscoverConfig.from_config({"discover": {"select": "latest"}})
    with pytest.raises(ConfigError, match="--select"):
        config.with_overrides(filters={}, select="latest")


@pytest.mark.anyio
async def test_aged_estate_sends_one_pair_per_exposed_resource(
    make_simulator: MakeSimulator,
) -> None:
    async with make_simulator(items=140, age_days=7, regions=("cn-north-1",)) as sim:
        project = sim.state.projects[0]
        rules = (Rule((Dest(EAST2, sim.state.destination_projects[EAST2]),)),)
        source = (Source(project.id, project.region),)
        async with client_for(sim) as client:
            newest = await discover(client, DiscoverConfig(source, rules, select="newest"))
            every = await discover(client, DiscoverConfig(source, rules))
        resources = {i.resource_id for i in sim.state.items_of(project.id)}
        assert len(resources) == 20
        sent = [sim.state.item(project.id, t.checkpoint_item_id) for t in newest.tasks]
        assert len({i.resource_id for i in sent}) == len(sent) < len(resources)
        for item in sent:  # each one is its resource's newest backup
            newest_of = max(
                (i for i in sim.state.items_of(project.id) if i.resource_id == item.resource_id),
                key=lambda i: i.created_at,
            )
            assert item.id == newest_of.id
        assert len(every.tasks) > 3 * len(newest.tasks)


def test_the_select_flag_reaches_discover(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = {}
    with simulator_thread(items=140, age_days=7, regions=("cn-north-1",)) as sim:
        use_sim_credentials(monkeypatch, sim)
        project = sim.state.projects[0]
        to = f"{EAST2}={sim.state.destination_projects[EAST2]}"
        for select in ("all", "newest"):
            out = tmp_path / f"{select}.csv"
            argv = ["discover", "--endpoint", sim.base_url, "--project-id", project.id,
                    "--region", project.region, "--to", to, "--select", select, "-o", str(out),
                    "--log-level", "warning"]  # fmt: skip
            assert main(argv) == 0
            rows[select] = out.read_text().count("\n") - 1
    assert 0 < rows["newest"] <= 20 < rows["all"]
    assert "older than a newer backup" in capsys.readouterr().out


def test_coverage_reads_a_skipped_copy_as_no_copy() -> None:
    fold = CoverageFold()
    seen = observe(
        backup(1, "a", 0, copied(status="skip")),
        project_id=SRC.project_id,
        source_region=SRC.region,
        targets=[EAST2],
    )
    assert seen is not None
    fold.add(seen)
    (row,) = fold.result(now=T0, rpo_s=26 * 3600).rows
    assert row.state is State.MISSING
    assert row.reason == "never copied; the last copy was skipped by the service"
