"""The look-ups' pace on fake time: a stream of GETs against a token-bucket gateway is brought
to the rate the gateway allows, a listing is paced per page, and what one step learned the
next starts at (and the state file keeps)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import anyio
import orjson
import pytest

from orchestrator.config.settings import RunSettings
from orchestrator.engine.pace import PaceSettings
from orchestrator.engine.paced_service import PacedService, Pacing
from orchestrator.errors import TransientApiError, TransportError
from orchestrator.models import ReplicationTask
from orchestrator.service.records import RecordReader

pytestmark = pytest.mark.anyio

PROJECT = "0" * 32
REGION = "cn-north-1"
LABEL = f"{REGION}/{PROJECT}"


class FakeTime:
    """The clock and sleep the waits run on: a sleep moves the clock, nothing really waits."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept = 0.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.slept += seconds
        await anyio.lowlevel.checkpoint()


class Gateway:
    """A service behind a token bucket per project (``rate`` a second, ``burst`` at most),
    answering in no time; a 429 ``APIG.0308`` when the bucket is empty."""

    records = RecordReader()

    def __init__(self, time: FakeTime, rate: float, burst: float = 5.0, items: int = 0) -> None:
        self.time, self.rate, self.burst = time, rate, burst
        self.tokens, self.last = burst, 0.0
        self.sends: list[tuple[float, bool]] = []
        self.items = [{"id": f"item-{n}"} for n in range(items)]
        self.pages = 0
        self.cut = False  # the next request's connection is cut (no answer)

    def _take(self) -> None:
        now = self.time.now
        if self.cut:
            self.cut = False
            raise TransportError("connection reset", maybe_applied=False)
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        ok = self.tokens >= 1.0
        self.sends.append((now, ok))
        if not ok:
            raise TransientApiError(
                "throttled",
                http_status=429,
                error_code="APIG.0308",
                error_msg="policy user over ratelimit, limit:50, time:1 second",
            )
        self.tokens -= 1.0

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    async def replicate(self, task: ReplicationTask) -> str:
        self._take()
        return "record"

    async def find_replication(self, task: ReplicationTask) -> str | None:
        self._take()
        return None

    async def capabilities(
        self, project_id: str, *, region: str | None = None
    ) -> dict[str, list[str]]:
        self._take()
        return {REGION: ["cn-east-2"]}

    async def get_item(
        self, project_id: str, item_id: str, *, region: str | None = None
    ) -> dict[str, Any]:
        self._take()
        return {"id": item_id}

    async def iter_items(
        self,
        project_id: str,
        *,
        region: str | None = None,
        page_size: int = 1000,
        marker: str | None = None,
        **filters: str | int | bool,
    ) -> AsyncIterator[dict[str, Any]]:
        start = 0 if marker is None else [i["id"] for i in self.items].index(marker) + 1
        while True:  # as the client pages: the next page only after a full one
            self._take()
            self.pages += 1
            page = self.items[start : start + page_size]
            for item in page:
                yield item
            if len(page) < page_size:
                return
            start += page_size

    async def replication_records(
        self,
        project_id: str,
        *,
        region: str | None = None,
        source_item_id: str | None = None,
        destination_region: str | None = None,
        status: str | None = None,
    ) -> list[dict[str, Any]]:
        self._take()
        return []


def _pacing(time: FakeTime, ceiling: float = 0.0, **kw: Any) -> Pacing:
    return Pacing(PaceSettings(ceiling=ceiling), clock=time.clock, sleep=time.sleep, **kw)


async def _poll(service: PacedService | Any, count: int) -> int:
    """``count`` GETs one after another; how many were throttled (and not retried)."""
    refused = 0
    for n in range(count):
        try:
            await service.get_item(PROJECT, f"item-{n}", region=REGION)
        except TransientApiError:
            refused += 1
    return refused


async def test_a_throttled_stream_of_gets_is_brought_to_the_rate_allowed() -> None:
    time = FakeTime()
    gateway = Gateway(time, rate=50.0)
    pacing = _pacing(time)
    paced = pacing.wrap(gateway)
    assert isinstance(paced, PacedService)

    refused = await _poll(paced, 1500)

    # A few refusals while it learns, then none to speak of: under 2 % in all.
    assert refused == sum(1 for _, ok in gateway.sends if not ok)
    assert refused < 0.02 * 1500, refused
    late = [(t, ok) for t, ok in gateway.sends if t >= 10.0]
    span = late[-1][0] - late[0][0]
    accepted_rate = sum(ok for _, ok in late) / span
    assert 45.0 < accepted_rate <= 50.5, accepted_rate  # the gateway's rate, less the margin
    assert sum(not ok for _, ok in late) <= 0.02 * len(late)
    (summary,) = pacing.summary().values()
    assert summary["throttled"] == refused
    assert summary["limit"] is not None
    assert 45 < float(summary["limit"]) < 56
    assert time.slept > 0  # on the fake clock: nothing really waited

    # Unpaced, the same stream is mostly refused (what the pace saves).
    time2 = FakeTime()
    assert await _poll(Gateway(time2, rate=50.0), 200) > 150


async def test_a_listing_is_paced_per_page_and_each_page_is_told() -> None:
    time = FakeTime()
    gateway = Gateway(time, rate=20.0, burst=2.0, items=95)
    pacing = _pacing(time, initial={LABEL: 10.0})  # a learned rate: paced from the start
    listed = [
        item async for item in pacing.wrap(gateway).iter_items(PROJECT, region=REGION, page_size=10)
    ]

    assert [i["id"] for i in listed] == [f"item-{n}" for n in range(95)]
    assert gateway.pages == 10
    assert all(ok for _, ok in gateway.sends)  # at the learned rate, under the gateway's
    (summary,) = pacing.summary().values()
    assert summary["accepted"] == 10  # one answer per page, not per item
    sends = [t for t, _ in gateway.sends]
    assert min(b - a for a, b in itertools.pairwise(sends)) == pytest.approx(0.1)


async def test_the_ceiling_caps_and_a_cut_connection_teaches_nothing() -> None:
    time = FakeTime()
    gateway = Gateway(time, rate=1000.0, burst=1000.0)
    pacing = _pacing(time, ceiling=10.0)
    paced = pacing.wrap(gateway)
    gateway.cut = True
    with pytest.raises(TransportError):
        await paced.capabilities(PROJECT, region=REGION)
    await _poll(paced, 30)
    (summary,) = pacing.summary().values()
    assert (summary["accepted"], summary["throttled"]) == (30, 0)  # the cut one: neither
    assert summary["rate"] == 10.0
    assert time.now == pytest.approx(3.0, abs=0.15)  # 31 slots at 10 a second


async def test_pacing_off_wraps_nothing(tmp_path: Path) -> None:
    settings = RunSettings.of(pace=False, state_file=str(tmp_path / "state.json"))
    pacing = Pacing.from_settings(settings)
    gateway = Gateway(FakeTime(), rate=50.0)
    assert pacing.wrap(gateway) is gateway
    assert pacing.capabilities_of(gateway) is gateway


async def test_what_one_step_learns_the_next_starts_at_and_the_state_file_keeps(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state.json"
    state.write_bytes(orjson.dumps({"cn-east-2": 12, "pace": {"other/p": 7.0}}))
    time = FakeTime()
    pacing = Pacing.from_settings(
        RunSettings.of(state_file=str(state)), clock=time.clock, sleep=time.sleep
    )
    assert pacing.known() == {"other/p": 7.0}

    await _poll(pacing.wrap(Gateway(time, rate=30.0)), 600)  # discovery, say: learns ~30
    learned = pacing.known()[LABEL]
    assert 25 < learned < 34

    # The run measured its own (the pool paces with its controllers): the next step starts
    # there, paced from its first request.
    pacing.adopt({LABEL: 12.0, "never/throttled": None})
    assert pacing.known() == {"other/p": 7.0, LABEL: 12.0}
    before = time.now
    gateway = Gateway(time, rate=30.0, burst=1.0)
    assert await _poll(pacing.wrap(gateway), 24) == 0
    assert time.now - before == pytest.approx(23 / 12.0, rel=0.05)

    pacing.save()
    saved = orjson.loads(state.read_bytes())
    assert saved["cn-east-2"] == 12  # the learned limits stay
    assert saved["pace"]["other/p"] == 7.0
    assert saved["pace"][LABEL] == pytest.approx(12.0)
