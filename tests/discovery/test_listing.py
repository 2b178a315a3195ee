"""Listing one source: a page that fails is asked again from where the listing was, each page
with its own retries, and every backup comes out once (CSBS and CBR, over loopback to the
simulator with faults on its listing, and with fakes for the retry policy's limits)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from orchestrator.discovery.listing import list_source
from orchestrator.discovery.rules import Destination as Dest
from orchestrator.discovery.rules import DiscoverConfig, Filters, Rule, Source
from orchestrator.engine.retry import RetryPolicy
from orchestrator.errors import PermanentApiError, TransientApiError
from orchestrator.service.aksk import AkSkSigner
from orchestrator.service.auth import Secret
from orchestrator.service.cbr import CbrClient
from orchestrator.service.client import CsbsClient
from orchestrator.service.settings import ClientSettings
from orchestrator.simulator.cbr import LIST_BACKUPS
from orchestrator.simulator.csbs import LIST_ITEMS
from tests.conftest import MakeSimulator

PAGE = 7
PATIENT = RetryPolicy(max_attempts=30, base_delay_s=0.0, max_delay_s=0.0)
SRC = Source("7d457b1297f4c725144e92e6f36ca20a", "cn-north-1")


def _config(source: Source, **filters: Any) -> DiscoverConfig:
    rules = (Rule((Dest("cn-east-2", "4d1af636729c167e5bfcb3bc96b481d8"),)),)
    return DiscoverConfig((source,), rules, Filters(**filters), page_size=PAGE)


async def _no_sleep(_: float) -> None:
    return None


@pytest.mark.anyio
@pytest.mark.parametrize("service", ["csbs", "cbr"])
async def test_a_flaky_listing_asks_each_failed_page_again_and_lists_each_backup_once(
    make_simulator: MakeSimulator, service: str
) -> None:
    faults = {"faults_on": "all", "p503": 0.3, "p_drop": 0.05, "seed": 4}
    async with make_simulator(items=300, regions=("cn-north-1",), **faults) as sim:
        project = sim.state.projects[0]
        signer = AkSkSigner(sim.config.ak, Secret(sim.config.sk))
        kind = CsbsClient if service == "csbs" else CbrClient
        route = LIST_ITEMS if service == "csbs" else LIST_BACKUPS
        source = Source(project.id, project.region)
        async with kind(ClientSettings(endpoint=sim.base_url), signer) as client:
            listing = list_source(client, source, _config(source, status=None), retry=PATIENT)
            listed = [item["id"] async for item in listing]
        expected = [i.id for i in sim.state.items_of(project.id)]
        assert len(listed) == len(set(listed)) == len(expected)  # each once
        assert set(listed) == set(expected)  # none missed
        answered = sim.counters.requests
        failed = sum(n for (name, code), n in answered.items() if name == route and code != "200")
        assert failed > 5  # pages failed and were asked again...
        # ...and each page was answered 200 once: a listing restarted from the first page
        # would have been answered more.
        assert sim.counters.requests_for(route, 200) == len(expected) // PAGE + 1


class _Pages:
    """Pages of ``PAGE`` fake items; every page's GET fails ``fails`` times first."""

    def __init__(self, count: int, fails: int) -> None:
        self.ids = [f"00000000-0000-4000-8000-{n:012d}" for n in range(count)]
        self.fails = fails
        self.asked: list[str | None] = []  # each GET's marker

    async def iter_items(
        self,
        project_id: str,
        *,
        region: str | None = None,
        page_size: int = 1000,
        marker: str | None = None,
        **filters: str | int | bool,
    ) -> AsyncIterator[dict[str, Any]]:
        start = 0 if marker is None else self.ids.index(marker) + 1
        while True:
            self.asked.append(marker)
            if self.asked.count(marker) <= self.fails:
                raise TransientApiError("HTTP 503", http_status=503)
            page = self.ids[start : start + page_size]
            for item_id in page:
                yield {"id": item_id}
            if len(page) < page_size:
                return
            start += page_size
            marker = page[-1]


@pytest.mark.anyio
async def test_each_page_has_the_policy_s_attempts_not_the_whole_listing() -> None:
    pages = _Pages(count=5 * PAGE, fails=2)  # 6 pages, 12 failures in all
    listing = list_source(
        pages, SRC, _config(SRC), retry=RetryPolicy(max_attempts=3), sleep=_no_sleep
    )
    listed = [item["id"] async for item in listing]
    assert listed == pages.ids
    markers = [None, *pages.ids[PAGE - 1 :: PAGE]]
    assert pages.asked == [m for m in markers for _ in range(3)]  # each page thrice, in order


@pytest.mark.anyio
async def test_a_page_is_given_up_after_the_policy_s_attempts_or_time() -> None:
    pages = _Pages(count=3 * PAGE, fails=5)
    listing = list_source(
        pages, SRC, _config(SRC), retry=RetryPolicy(max_attempts=5), sleep=_no_sleep
    )
    with pytest.raises(TransientApiError):
        _ = [item async for item in listing]
    assert pages.asked == [None] * 5

    now = [0.0]
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    slow = RetryPolicy(max_attempts=100, max_elapsed_s=10.0, base_delay_s=4.0, max_delay_s=4.0)
    pages = _Pages(count=3 * PAGE, fails=100)
    listing = list_source(pages, SRC, _config(SRC), retry=slow, sleep=sleep, clock=lambda: now[0])
    with pytest.raises(TransientApiError):
        _ = [item async for item in listing]
    assert sum(waits) < 10.0  # no wait that would cross the time limit
    assert len(pages.asked) == len(waits) + 1


@pytest.mark.anyio
async def test_backups_created_while_a_flaky_listing_runs_move_nothing_between_pages(
    make_simulator: MakeSimulator,
) -> None:
    """New backups (the newest: first in the service's order) created part way do not push
    the older ones onto the next page (paging is by marker, not offset): each backup there
    at the start is listed exactly once; the new ones, before the marker, wait for the next
    night's listing."""
    faults = {"faults_on": "all", "p503": 0.3, "seed": 8}
    async with make_simulator(items=300, regions=("cn-north-1",), **faults) as sim:
        project = sim.state.projects[0]
        signer = AkSkSigner(sim.config.ak, Secret(sim.config.sk))
        before = {i.id for i in sim.state.items_of(project.id)}
        source = Source(project.id, project.region)
        listed: list[str] = []
        async with CsbsClient(ClientSettings(endpoint=sim.base_url), signer) as client:
            listing = list_source(client, source, _config(source, status=None), retry=PATIENT)
            async for item in listing:
                listed.append(item["id"])
                if len(listed) % 50 == 0:
                    sim.state.add_items(project.id, 5)
        new = {i.id for i in sim.state.items_of(project.id)} - before
        assert len(new) >= 20
        assert len(listed) == len(set(listed))  # none twice
        assert set(listed) == before  # none missed; the new ones are the next night's


class _Shrinking:
    """Pages of fake items in which backups are deleted as the listing goes (before the
    ``n``-th GET, ``deletions[n]``); a marker no longer there is refused, 400, as the
    simulator does (``refuse_markers``: every marker is)."""

    def __init__(self, count: int, deletions: dict[int, list[int]], **kw: bool) -> None:
        self.all = [f"00000000-0000-4000-8000-{n:012d}" for n in range(count)]
        self.ids = list(self.all)
        self.deletions = deletions
        self.refuse_markers = kw.get("refuse_markers", False)
        self.asked: list[str | None] = []

    def _get(self, marker: str | None, size: int) -> list[str]:
        self.asked.append(marker)
        for n in self.deletions.get(len(self.asked), ()):
            self.ids.remove(self.all[n])
        if marker is not None and (self.refuse_markers or marker not in self.ids):
            raise PermanentApiError("HTTP 400 CSBS.9001 marker", http_status=400)
        start = 0 if marker is None else self.ids.index(marker) + 1
        return self.ids[start : start + size]

    async def iter_items(
        self,
        project_id: str,
        *,
        region: str | None = None,
        page_size: int = 1000,
        marker: str | None = None,
        **filters: str | int | bool,
    ) -> AsyncIterator[dict[str, Any]]:
        while True:
            page = self._get(marker, page_size)
            for item_id in page:
                yield {"id": item_id}
            if len(page) < page_size:
                return
            marker = page[-1]


def _list(lister: Any) -> Any:
    return list_source(lister, SRC, _config(SRC), sleep=_no_sleep)


@pytest.mark.anyio
async def test_a_marker_deleted_meanwhile_sends_the_listing_back_a_page() -> None:
    # Page 2's last backup (the marker of page 3) is deleted before page 3 is asked.
    pages = _Shrinking(4 * PAGE + 3, {3: [2 * PAGE - 1]})
    listed = [item["id"] async for item in _list(pages)]
    assert listed == pages.all  # each once: the deleted one was listed before it went
    end = pages.all
    assert pages.asked[:5] == [None, end[PAGE - 1], end[2 * PAGE - 1], end[PAGE - 1], end[2 * PAGE]]


@pytest.mark.anyio
async def test_two_markers_deleted_send_the_listing_to_the_first_page() -> None:
    pages = _Shrinking(4 * PAGE + 3, {3: [PAGE - 1, 2 * PAGE - 1]})
    listed = [item["id"] async for item in _list(pages)]
    assert listed == pages.all
    end = pages.all
    assert pages.asked[:5] == [None, end[PAGE - 1], end[2 * PAGE - 1], end[PAGE - 1], None]


@pytest.mark.anyio
async def test_a_service_refusing_every_marker_ends_the_listing_instead_of_looping() -> None:
    pages = _Shrinking(3 * PAGE, {}, refuse_markers=True)
    with pytest.raises(PermanentApiError):
        _ = [item async for item in _list(pages)]
    end = pages.all[PAGE - 1]
    assert pages.asked == [None, end, None, end]  # the first page twice, then given up


@pytest.mark.anyio
@pytest.mark.parametrize("kind", [CsbsClient, CbrClient])
async def test_the_simulator_refuses_a_marker_it_does_not_know_as_the_listing_expects(
    make_simulator: MakeSimulator, kind: type[CsbsClient] | type[CbrClient]
) -> None:
    async with make_simulator(items=20, regions=("cn-north-1",)) as sim:
        project = sim.state.projects[0]
        signer = AkSkSigner(sim.config.ak, Secret(sim.config.sk))
        async with kind(ClientSettings(endpoint=sim.base_url), signer) as client:
            gone = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"
            with pytest.raises(PermanentApiError) as caught:
                _ = [i async for i in client.iter_items(project.id, marker=gone)]
    assert caught.value.http_status == 400
