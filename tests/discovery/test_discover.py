"""Discovery: paging over a large estate, every filter, the rules, what is skipped, the manifest.

Listings go over real HTTP to the embedded simulator; the ground truth comes from its estate.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from orchestrator.discovery.discover import discover
from orchestrator.discovery.item import pair_state
from orchestrator.discovery.manifest_out import write_manifest
from orchestrator.discovery.rules import Destination as Dest
from orchestrator.discovery.rules import DiscoverConfig, Filters, Rule, Source, parse_since
from orchestrator.engine.manifest import iter_manifest
from orchestrator.engine.retry import RetryPolicy
from orchestrator.errors import ConfigError, PermanentApiError, TransientApiError
from orchestrator.models import ReplicationTask
from orchestrator.service.aksk import AkSkSigner
from orchestrator.service.auth import Secret
from orchestrator.service.client import CsbsClient
from orchestrator.service.settings import ClientSettings
from orchestrator.simulator import Simulator
from orchestrator.simulator.csbs import LIST_ITEMS
from orchestrator.simulator.records import Item
from tests.conftest import MakeSimulator

EAST2 = "cn-east-2"
SOUTH1 = "cn-south-1"
DEST_B = "4d1af636729c167e5bfcb3bc96b481d8"
DEST_C = "95bf705ea7424d84d1073b5fb8d7fdf5"
ONE_REGION = {"regions": ("cn-north-1",)}


def client_for(sim: Simulator) -> CsbsClient:
    signer = AkSkSigner(sim.config.ak, Secret(sim.config.sk))
    return CsbsClient(ClientSettings(endpoint=sim.base_url), signer)


def source_of(sim: Simulator, index: int = 0) -> Source:
    project = sim.state.projects[index]
    return Source(project.id, project.region)


def everything_to(sim: Simulator, *regions: str, **filters: Any) -> DiscoverConfig:
    to = tuple(Dest(r, sim.state.destination_projects[r]) for r in regions)
    return DiscoverConfig(
        sources=tuple(source_of(sim, i) for i in range(len(sim.state.projects))),
        rules=(Rule(to),),
        filters=Filters(**filters),
    )


def blocked(sim: Simulator, item: Item, region: str) -> bool:
    """Ground truth: the estate has a live (not failed) replication of item to region."""
    record = sim.state.latest_record(item.id, region)
    return record is not None and record.blocks_duplicate(sim.state.now())


def available(sim: Simulator) -> list[Item]:
    return [
        i for p in sim.state.projects for i in sim.state.items_of(p.id) if i.status == "available"
    ]


# --------------------------------------------------------------------------- paging + skipping


@pytest.mark.anyio
async def test_pages_through_2600_items_and_skips_what_is_replicated(
    make_simulator: MakeSimulator,
) -> None:
    async with make_simulator(items=2600, **ONE_REGION) as sim, client_for(sim) as client:
        found = await discover(client, everything_to(sim, EAST2), retry=RetryPolicy())
        items = available(sim)
        expected = {i.id for i in items if not blocked(sim, i, EAST2)}
        assert len(items) > 2000  # about 82% of the estate is available
        assert {t.checkpoint_item_id for t in found.tasks} == expected
        assert len(found.tasks) == len(expected)  # no pair twice
        (summary,) = found.summaries
        assert summary.listed == len(items)
        assert summary.matched == len(items)
        assert summary.pairs == len(expected)
        in_progress = sum(
            1
            for i in items
            if (r := sim.state.latest_record(i.id, EAST2)) is not None
            and r.status(sim.state.now()) in {"waiting_replicate", "replicating"}
        )
        assert summary.in_progress == in_progress > 0
        assert summary.replicated == len(items) - len(expected) - in_progress > 0
        # 2,100-odd available items at 1,000 per page: three pages, the last one short.
        assert sim.counters.requests_for(LIST_ITEMS, 200) == 3
        task = found.tasks[0]
        assert task.project_id == sim.state.projects[0].id
        assert task.source_region == "cn-north-1"
        assert task.destination_project_id == sim.state.destination_projects[EAST2]


@pytest.mark.anyio
async def test_small_pages_give_the_same_answer(make_simulator: MakeSimulator) -> None:
    async with make_simulator(items=600, **ONE_REGION) as sim, client_for(sim) as client:
        big = await discover(client, everything_to(sim, EAST2))
        small_config = everything_to(sim, EAST2)
        small = await discover(
            client,
            DiscoverConfig(small_config.sources, small_config.rules, page_size=37),
        )
        assert [t.key for t in small.tasks] == [t.key for t in big.tasks]
        pages = sim.counters.requests_for(LIST_ITEMS, 200)
        assert pages == 1 + (len(available(sim)) // 37 + 1)


@pytest.mark.anyio
async def test_every_source_is_listed_and_counted_apart(make_simulator: MakeSimulator) -> None:
    async with make_simulator(items=300) as sim, client_for(sim) as client:
        found = await discover(client, everything_to(sim, SOUTH1))
        assert [s.source for s in found.summaries] == [source_of(sim, i) for i in range(3)]
        for summary in found.summaries:
            own = [
                i for i in sim.state.items_of(summary.source.project_id) if i.status == "available"
            ]
            assert summary.listed == len(own)
            assert summary.pairs == sum(1 for i in own if not blocked(sim, i, SOUTH1))
        assert sum(s.pairs for s in found.summaries) == len(found.tasks)


# --------------------------------------------------------------------------- filters


@pytest.mark.anyio
async def test_filter_status_any_lists_everything_but_sends_only_available(
    make_simulator: MakeSimulator,
) -> None:
    async with make_simulator(items=400, **ONE_REGION) as sim, client_for(sim) as client:
        found = await discover(client, everything_to(sim, EAST2, status=None))
        (summary,) = found.summaries
        everything = sim.state.items_of(sim.state.projects[0].id)
        assert summary.listed == len(everything)
        assert summary.not_available == sum(1 for i in everything if i.status != "available")
        assert summary.not_available > 0
        assert {t.checkpoint_item_id for t in found.tasks} == {
            i.id for i in available(sim) if not blocked(sim, i, EAST2)
        }


@pytest.mark.anyio
async def test_filter_status_error_sends_nothing(make_simulator: MakeSimulator) -> None:
    async with make_simulator(items=400, **ONE_REGION) as sim, client_for(sim) as client:
        found = await discover(client, everything_to(sim, EAST2, status="error"))
        errors = [i for i in sim.state.items_of(sim.state.projects[0].id) if i.status == "error"]
        assert found.summaries[0].listed == len(errors) > 0
        assert found.tasks == []


@pytest.mark.anyio
async def test_filter_name_policy_resource_type_and_since(make_simulator: MakeSimulator) -> None:
    async with make_simulator(items=800, **ONE_REGION) as sim, client_for(sim) as client:
        items = available(sim)

        async def listed(**filters: Any) -> set[str]:
            found = await discover(client, everything_to(sim, EAST2, status=None, **filters))
            assert found.summaries[0].listed == len(
                [i for i in sim.state.items_of(sim.state.projects[0].id) if _matches(i, filters)]
            )
            return {t.checkpoint_item_id for t in found.tasks}

        def sendable(pick: Any) -> set[str]:
            return {i.id for i in items if pick(i) and not blocked(sim, i, EAST2)}

        assert await listed(name="manualbk") == sendable(lambda i: "manualbk" in i.name)
        policy = items[0].policy_id
        assert await listed(policy_id=policy) == sendable(lambda i: i.policy_id == policy)
        assert await listed(resource_type="OS::Nova::Server") == sendable(lambda i: True)
        assert await listed(resource_type="OS::Cinder::Volume") == set()
        cut = sorted(i.created_at for i in items)[len(items) // 2]
        since = datetime.fromtimestamp(cut, UTC)
        assert await listed(created_since=since) == sendable(lambda i: i.created_at >= cut)


def _matches(item: Item, filters: dict[str, Any]) -> bool:
    if "name" in filters and filters["name"] not in item.name:
        return False
    if "policy_id" in filters and item.policy_id != filters["policy_id"]:
        return False
    if "resource_type" in filters and item.resource_type != filters["resource_type"]:
        return False
    since = filters.get("created_since")
    return since is None or item.created_at >= since.timestamp() - 1e-6


@pytest.mark.anyio
async def test_new_backups_found_with_since(make_simulator: MakeSimulator) -> None:
    async with make_simulator(items=300, **ONE_REGION) as sim, client_for(sim) as client:
        new = sim.state.add_items(sim.state.projects[0].id, 5)
        now = datetime.fromtimestamp(sim.state.now(), UTC)
        config = everything_to(sim, EAST2).with_overrides(filters={"created_since": "2h"}, now=now)
        found = await discover(client, config)
        assert {t.checkpoint_item_id for t in found.tasks} == {i.id for i in new}


# --------------------------------------------------------------------------- rules


@pytest.mark.anyio
async def test_rules_by_source_and_by_name_pattern(make_simulator: MakeSimulator) -> None:
    async with make_simulator(items=300) as sim, client_for(sim) as client:
        north1, north4 = source_of(sim, 0), source_of(sim, 1)
        config = DiscoverConfig(
            sources=(north1, north4),
            rules=(
                Rule(
                    (Dest(EAST2, DEST_B),),
                    source_region="cn-north-1",
                    source_project_id=north1.project_id,
                ),
                Rule((Dest(SOUTH1, DEST_C), Dest("cn-east-3", DEST_B)), name="manualbk_*"),
            ),
        )
        found = await discover(client, config)
        got = {
            (t.checkpoint_item_id, t.destination_region, t.destination_project_id)
            for t in found.tasks
        }
        want: set[tuple[str, str, str]] = set()
        for source in (north1, north4):
            for item in sim.state.items_of(source.project_id):
                if item.status != "available":
                    continue
                targets = {}
                if source is north1:
                    targets[EAST2] = DEST_B
                if item.name.startswith("manualbk_"):
                    targets.setdefault(SOUTH1, DEST_C)
                    targets.setdefault("cn-east-3", DEST_B)
                for region, project in targets.items():
                    if not blocked(sim, item, region):
                        want.add((item.id, region, project))
        assert got == want
        north4_summary = found.summaries[1]
        assert 0 < north4_summary.matched < north4_summary.listed  # only manual backups


class FakeLister:
    """Serves fixed items; can fail once part way (a transient error mid-listing)."""

    def __init__(
        self,
        items: list[dict[str, Any]],
        *,
        fail_after: int | None = None,
        error: Exception | None = None,
    ) -> None:
        self.items = items
        self.fail_after = fail_after
        self.error = error  # raised by every call
        self.calls = 0
        self.markers: list[str | None] = []  # each call's: where it started

    async def iter_items(
        self,
        project_id: str,
        *,
        region: str | None = None,
        page_size: int = 1000,
        marker: str | None = None,
        **filters: str | int | bool,
    ) -> AsyncIterator[dict[str, Any]]:
        self.calls += 1
        self.markers.append(marker)
        if self.error is not None:
            raise self.error
        ids = [item.get("id") for item in self.items]
        start = 0 if marker is None else ids.index(marker) + 1
        for index, item in enumerate(self.items[start:], start):
            if self.fail_after is not None and index == self.fail_after:
                self.fail_after = None
                raise TransientApiError("HTTP 503", http_status=503)
            yield item


def fake_item(n: int, **fields: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": f"00000000-0000-4000-8000-{n:012d}",
        "name": f"autobk_{n}",
        "status": "available",
        "resource_type": "OS::Nova::Server",
        "extend_info": {"copy_status": "na", "copy_from": "", "resource_name": f"ecs-{n}"},
        "replication_records": [],
    }
    item.update(fields)
    return item


SRC = Source("7d457b1297f4c725144e92e6f36ca20a", "cn-north-1")


async def no_sleep(_: float) -> None:
    return None


@pytest.mark.anyio
async def test_first_rule_wins_per_region_own_region_and_replicas_are_skipped() -> None:
    items = [
        fake_item(1),
        fake_item(2, extend_info={"copy_from": "cn-north-4", "copy_status": "na"}),
        fake_item(3, name="db-nightly", extend_info={"resource_name": "ecs-db-1"}),
    ]
    config = DiscoverConfig(
        (SRC,),
        (
            Rule((Dest(EAST2, DEST_B),), resource_name="ecs-db-*"),
            Rule((Dest(EAST2, DEST_C), Dest("cn-north-1", DEST_C))),
        ),
    )
    found = await discover(FakeLister(items), config)
    got = [
        (t.checkpoint_item_id[-1], t.destination_region, t.destination_project_id)
        for t in found.tasks
    ]
    assert got == [("1", EAST2, DEST_C), ("3", EAST2, DEST_B)]
    assert found.summaries[0].replicas == 1
    with_replicas = DiscoverConfig(config.sources, config.rules, include_replicas=True)
    assert len((await discover(FakeLister(items), with_replicas)).tasks) == 3


@pytest.mark.anyio
async def test_a_transient_error_mid_listing_goes_on_without_double_counting() -> None:
    lister = FakeLister([fake_item(n) for n in range(10)], fail_after=6)
    config = DiscoverConfig((SRC,), (Rule((Dest(EAST2, DEST_B),)),))
    found = await discover(lister, config, sleep=no_sleep)
    assert lister.calls == 2
    # Asked again from after the last item it had, not from the first.
    assert lister.markers == [None, fake_item(5)["id"]]
    assert found.summaries[0].listed == 10
    assert len(found.tasks) == 10


@pytest.mark.anyio
async def test_listing_gives_up_after_the_attempts_and_permanent_errors_pass() -> None:
    config = DiscoverConfig((SRC,), (Rule((Dest(EAST2, DEST_B),)),))
    broken = FakeLister([], error=TransientApiError("HTTP 503", http_status=503))
    with pytest.raises(TransientApiError):
        await discover(broken, config, retry=RetryPolicy(max_attempts=3), sleep=no_sleep)
    assert broken.calls == 3
    refused = FakeLister([], error=PermanentApiError("HTTP 400"))
    with pytest.raises(PermanentApiError):
        await discover(refused, config, sleep=no_sleep)
    assert refused.calls == 1


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        (fake_item(1), None),
        (
            fake_item(1, replication_records=[{"destination_region": EAST2, "status": "success"}]),
            "replicated",
        ),
        (
            fake_item(1, replication_records=[{"destination_region": EAST2, "status": "copying"}]),
            "in_progress",
        ),
        (
            fake_item(
                1, replication_records=[{"destination_region": EAST2, "status": "waiting_copy"}]
            ),
            "in_progress",
        ),
        (fake_item(1, replication_records=[{"destination_region": EAST2, "status": "fail"}]), None),
        # The record vocabulary of the real service (issue 15): skip is final, worth sending.
        (fake_item(1, replication_records=[{"destination_region": EAST2, "status": "skip"}]), None),
        (
            fake_item(
                1,
                replication_records=[{"destination_region": EAST2, "status": "waiting_replicate"}],
            ),
            "in_progress",
        ),
        (
            fake_item(
                1, replication_records=[{"destination_region": EAST2, "status": "replicating"}]
            ),
            "in_progress",
        ),
        ({"id": "x", "extend_info": {"copy_status": "na"}}, None),
        (
            fake_item(1, replication_records=[{"destination_region": SOUTH1, "status": "success"}]),
            None,
        ),
        (
            fake_item(
                1,
                replication_records=[
                    {"destination_region": EAST2, "status": "fail"},
                    {"destination_region": EAST2, "status": "success"},
                ],
            ),
            "replicated",
        ),
        # No records in the answer: copy_status says a copy is running somewhere.
        ({"id": "x", "extend_info": {"copy_status": "copying"}}, "in_progress"),
        ({"id": "x", "extend_info": {"copy_status": "success"}}, None),
    ],
)
def test_pair_state(item: dict[str, Any], expected: str | None) -> None:
    assert pair_state(item, EAST2) == expected


# --------------------------------------------------------------------------- configuration


def test_config_schema_from_toml() -> None:
    config = DiscoverConfig.from_config(
        {
            "discover": {
                "status": "available",
                "name": "autobk",
                "created_since": "2026-03-01T00:00:00",
                "page_size": 500,
                "sources": [{"project_id": SRC.project_id.upper(), "region": "cn-north-1"}],
                "rules": [
                    {
                        "source_region": "cn-north-1",
                        "to": [{"region": EAST2, "project_id": DEST_B}],
                    },
                    {
                        "name": "prod-*",
                        "to": [
                            {"region": SOUTH1, "project_id": DEST_C},
                            {"region": "cn-east-3", "project_id": DEST_C},
                        ],
                    },
                ],
            }
        }
    )
    assert config.sources == (SRC,)
    assert config.page_size == 500
    assert config.filters.query() == {
        "status": "available",
        "name": "autobk",
        "start_time": "2026-03-01T00:00:00.000000",
    }
    assert config.rules[1] == Rule((Dest(SOUTH1, DEST_C), Dest("cn-east-3", DEST_C)), name="prod-*")


def test_default_source_and_command_line_overrides() -> None:
    now = datetime(2026, 3, 28, 1, 30, tzinfo=UTC)
    config = DiscoverConfig.from_config({}, default_source=SRC).with_overrides(
        filters={"status": "any", "created_since": "36h", "resource_type": None},
        to=[f"{EAST2}={DEST_B}"],
        now=now,
    )
    assert config.sources == (SRC,)
    assert config.rules == (Rule((Dest(EAST2, DEST_B),)),)
    assert config.filters.status is None
    assert config.filters.created_since == now - timedelta(hours=36)
    config.check()


@pytest.mark.parametrize(
    ("section", "needle"),
    [
        (
            {"rules": [{"source_regoin": "cn-north-1", "to": []}]},
            "unknown key 'source_regoin'; did you mean 'source_region'?",
        ),
        ({"rules": [{"name": "x"}]}, "to: a non-empty array"),
        ({"rules": [{"to": [{"region": "cn-east-2", "project_id": "B"}]}]}, "project id"),
        ({"rules": [{"to": [{"region": "East 2", "project_id": DEST_B}]}]}, "region name"),
        (
            {"rules": [{"source_region": EAST2, "to": [{"region": EAST2, "project_id": DEST_B}]}]},
            "equals the source region",
        ),
        (
            {
                "rules": [
                    {
                        "to": [
                            {"region": EAST2, "project_id": DEST_B},
                            {"region": EAST2, "project_id": DEST_C},
                        ]
                    }
                ]
            },
            "listed twice",
        ),
        ({"sources": [{"project_id": DEST_B}]}, "region"),
        ({"page_size": 0}, "page_size"),
        ({"include_replicas": "yes"}, "include_replicas"),
        ({"created_since": "last week"}, "created since"),
        ({"polcy_id": "x"}, "unknown key 'polcy_id'; did you mean 'policy_id'?"),
        ({"sourcs": []}, "[discover]: unknown key 'sourcs'; did you mean 'sources'?"),
    ],
)
def test_config_errors_name_what_is_wrong(section: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        DiscoverConfig.from_config({"discover": section}, path="c.toml")
    assert needle in str(info.value)
    assert "c.toml: [discover]" in str(info.value)


def test_nothing_to_do_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no source"):
        DiscoverConfig.from_config({}).check()
    with pytest.raises(ConfigError, match="no destination rules"):
        DiscoverConfig.from_config({}, default_source=SRC).check()
    with pytest.raises(ConfigError, match="REGION=PROJECT_ID"):
        DiscoverConfig.from_config({}).with_overrides(filters={}, to=["cn-east-2"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("36h", datetime(2026, 3, 26, 13, 30, tzinfo=UTC)),
        ("1d12h", datetime(2026, 3, 26, 13, 30, tzinfo=UTC)),
        ("2w", datetime(2026, 3, 14, 1, 30, tzinfo=UTC)),
        ("90m", datetime(2026, 3, 28, 0, 0, tzinfo=UTC)),
        ("2026-03-01T00:00:00", datetime(2026, 3, 1, tzinfo=UTC)),
        ("2026-03-01T01:00:00+01:00", datetime(2026, 3, 1, tzinfo=UTC)),
    ],
)
def test_parse_since(text: str, expected: datetime) -> None:
    assert parse_since(text, now=datetime(2026, 3, 28, 1, 30, tzinfo=UTC)) == expected


# --------------------------------------------------------------------------- the manifest


@pytest.mark.anyio
async def test_the_manifest_reads_back_as_the_same_pairs(
    make_simulator: MakeSimulator, tmp_path: Path
) -> None:
    async with make_simulator(items=200) as sim, client_for(sim) as client:
        found = await discover(client, everything_to(sim, SOUTH1, "cn-east-3"))
    path = tmp_path / "found.csv"
    assert write_manifest(found.tasks, path) == len(found.tasks) > 0
    header = path.read_text().splitlines()[0]
    example = Path(__file__).parents[2] / "configs" / "example-manifest.csv"
    assert header == example.read_text().splitlines()[0]
    back = [
        t for t in iter_manifest(path, default_project_id=None) if isinstance(t, ReplicationTask)
    ]
    assert [(t.key, t.destination_project_id, t.source_region) for t in back] == [
        (t.key, t.destination_project_id, t.source_region) for t in found.tasks
    ]
    left = await anyio.to_thread.run_sync(lambda: [p.name for p in tmp_path.iterdir()])
    assert left == ["found.csv"]  # no temp file left


def test_manifest_into_a_missing_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot write the manifest"):
        write_manifest([], tmp_path / "nope" / "m.csv")


def test_status_any_in_the_config_lists_every_status() -> None:
    assert DiscoverConfig.from_config({"discover": {"status": "any"}}).filters.status is None
    assert DiscoverConfig.from_config({}).filters.query() == {"status": "available"}


@pytest.mark.anyio
async def test_a_throttled_listing_waits_for_the_next_window() -> None:
    """APIG.0308 "time:1 second": the listing comes back no earlier than the next window."""
    throttled = TransientApiError("HTTP 429 APIG.0308", http_status=429, window_s=1.0)

    class Throttled(FakeLister):
        async def iter_items(
            self,
            project_id: str,
            *,
            region: str | None = None,
            page_size: int = 1000,
            marker: str | None = None,
            **filters: str | int | bool,
        ) -> AsyncIterator[dict[str, Any]]:
            self.calls += 1
            if self.calls == 1:
                raise throttled
            for item in self.items:
                yield item

    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    config = DiscoverConfig((SRC,), (Rule((Dest(EAST2, DEST_B),)),))
    found = await discover(Throttled([fake_item(1)]), config, sleep=sleep)
    assert len(found.tasks) == 1
    assert len(waits) == 1
    assert 1.0 <= waits[0] <= 1.25
