"""The look-ups' pace: capabilities, listings and record GETs at the rate the gateway allows.

The gateway's budget is per user, per project and endpoint, and a run's replicates are not the
only requests that draw on it: the capabilities GET before a run or a plan, discovery's listing
(a page per ``limit`` items), ``track``'s polls and ``coverage``'s listing do too. The pool paces
its own requests (:mod:`orchestrator.engine.admission`); everything else that talks to the
service goes through a :class:`PacedService`, which paces each call by its
``(region, project)`` key with the same rate controllers (:mod:`orchestrator.engine.pace`),
waiting on the same gates (:mod:`orchestrator.engine.pace_gate`) and learning from the answers
as the pool does (:func:`~orchestrator.engine.feedback.tell_pace`: a 429 ``APIG.0308`` is
throttled, any other answer took a token, a cut connection says nothing).

:class:`Pacing` is one process's pace of look-ups: created from the settings (``--rate`` the
ceiling, ``--pace false`` off, the ``--state-file``'s rates to start at), shared by the steps of
one command (nightly: discover, the run, coverage), so that what one step learned the next
starts at, and saved back to the state file at the end.

A listing's pages: the wrapper paces the pull that asks for a page. The client asks for the
next page only after a full one (``limit`` items), so the first pull and every
``page_size``-th one after it is a GET; the others are served from the page in hand.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, Self, TypeVar

import anyio
import structlog

from orchestrator.config.settings import RunSettings
from orchestrator.engine.feedback import tell_pace
from orchestrator.engine.pace import PaceKey, Pacer, PaceSettings, RateController
from orchestrator.engine.pace_gate import PaceGate
from orchestrator.engine.pace_state import load_learned_rates, save_learned_rates
from orchestrator.engine.progress import NullProgress
from orchestrator.errors import ApiError
from orchestrator.models import ReplicationTask
from orchestrator.service.preflight import HasCapabilities
from orchestrator.service.protocol import ReplicationService
from orchestrator.service.records import RecordReader

__all__ = ["PacedService", "Pacing", "get_key"]

log = structlog.get_logger("orchestrator.pace")

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]

_QUIET = NullProgress()  # look-ups have no progress display to tell


def get_key(project_id: str, region: str | None) -> PaceKey:
    """A look-up's budget: as :func:`~orchestrator.engine.pace.key_of` names a pair's."""
    return (region or "default", project_id)


class Pacing:
    """The look-ups' rate controllers of one process, by key; off when ``settings`` is None.

    ``clock`` and ``sleep`` are what the waits run on (``track`` passes its own, and its
    tests a simulated time: nothing really sleeps)."""

    def __init__(
        self,
        settings: PaceSettings | None,
        *,
        initial: Mapping[str, float] | None = None,
        clock: Clock = anyio.current_time,
        sleep: Sleep = anyio.sleep,
        state_file: str | None = None,
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._sleep = sleep
        self._state_file = state_file
        self._known: dict[str, float] = dict(initial or {})
        self._measured: dict[str, float] = {}  # in this process: what save() writes
        self._pacer = self._new_pacer()
        self._gates: dict[PaceKey, PaceGate] = {}

    @classmethod
    def from_settings(
        cls, settings: RunSettings, *, clock: Clock = anyio.current_time, sleep: Sleep = anyio.sleep
    ) -> Pacing:
        """``--rate`` the ceiling, ``--pace false`` off, the ``--state-file``'s rates to start."""
        return cls(
            PaceSettings.from_settings(settings),
            initial=load_learned_rates(settings.limits.state_file),
            clock=clock,
            sleep=sleep,
            state_file=settings.limits.state_file,
        )

    @property
    def enabled(self) -> bool:
        return self.settings is not None

    def _new_pacer(self) -> Pacer:
        return Pacer(self.settings or PaceSettings(), self._clock, initial=self._known)

    def wrap(self, service: ReplicationService) -> ReplicationService:
        """``service`` with every call paced (itself when pacing is off)."""
        return PacedService(service, self) if self.enabled else service

    def capabilities_of(self, client: HasCapabilities) -> HasCapabilities:
        """A client of which only the capabilities GET is needed (the run's preflight)."""
        return _PacedCapabilities(client, self) if self.enabled else client

    # -- what is known ---------------------------------------------------------------------

    def known(self) -> dict[str, float]:
        """Every rate known by key label: the state file's, then what was measured since."""
        return {**self._known, **self._pacer.learned()}

    def summary(self) -> dict[str, dict[str, float | int | None]]:
        """As a run's ``pace``: per key label used, limit, rate, accepted and throttled."""
        return self._pacer.summary()

    def adopt(self, measured: Mapping[str, float | None]) -> None:
        """Rates another step measured (the run's pool: it paces with its own controllers)
        become where the next look-ups start; None: not measured there."""
        fresh = {k: v for k, v in measured.items() if v is not None and v > 0}
        if not fresh:
            return
        self._measured = {**self._measured, **self._pacer.learned(), **fresh}
        self._known = {**self.known(), **fresh}
        self._pacer = self._new_pacer()
        self._gates = {}

    def save(self) -> None:
        """Merge the measured rates into the ``--state-file`` (nothing without one)."""
        learned = self._pacer.learned()
        if any(p["throttled"] for p in self.summary().values()):
            log.info("pace.lookups", pace=self.summary())
        save_learned_rates(self._state_file, {**self._measured, **learned})

    # -- one call --------------------------------------------------------------------------

    def _gate(self, key: PaceKey) -> PaceGate:
        gate = self._gates.get(key)
        if gate is None:
            gate = self._gates[key] = PaceGate(self._pacer[key], sleep=self._sleep)
        return gate

    async def slot(self, key: PaceKey) -> tuple[RateController, float]:
        """Wait for the key's next send slot; its controller and the send time."""
        gate = self._gate(key)
        if not gate.try_pass():
            await gate.wait()
        return gate.controller, self._clock()

    async def call(self, key: PaceKey, call: Callable[[], Awaitable[T]]) -> T:
        """``call()`` (one request) in its slot, its answer told to the key's controller."""
        controller, sent_at = await self.slot(key)
        try:
            result = await call()
        except ApiError as exc:
            tell_pace(controller, sent_at, exc, _QUIET)
            raise
        tell_pace(controller, sent_at, None, _QUIET)
        return result


class _PacedCapabilities:
    def __init__(self, inner: HasCapabilities, pacing: Pacing) -> None:
        self._inner = inner
        self._pacing = pacing

    async def capabilities(
        self, project_id: str, *, region: str | None = None
    ) -> dict[str, list[str]]:
        return await self._pacing.call(
            get_key(project_id, region),
            lambda: self._inner.capabilities(project_id, region=region),
        )


class PacedService:
    """A :class:`~orchestrator.service.protocol.ReplicationService` whose every call waits for
    its key's slot and tells the key's controller what the answer said.

    A call the client makes of several requests (CBR's ``replication_records``: the backup,
    then the operation logs' pages; CSBS's ``find_replication``: the item, then the records)
    takes one slot: the rate is learned in calls, and held in calls. The pool does not use
    this wrapper (it paces its own requests, pairs and look-ups alike)."""

    def __init__(self, inner: ReplicationService, pacing: Pacing) -> None:
        self._inner = inner
        self._pacing = pacing
        self.records: RecordReader = inner.records

    async def __aenter__(self) -> Self:
        await self._inner.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._inner.__aexit__(exc_type, exc, tb)

    async def replicate(self, task: ReplicationTask) -> str:
        return await self._pacing.call(
            get_key(task.project_id, task.source_region), lambda: self._inner.replicate(task)
        )

    async def find_replication(self, task: ReplicationTask) -> str | None:
        return await self._pacing.call(
            get_key(task.project_id, task.source_region),
            lambda: self._inner.find_replication(task),
        )

    async def capabilities(
        self, project_id: str, *, region: str | None = None
    ) -> dict[str, list[str]]:
        return await self._pacing.call(
            get_key(project_id, region),
            lambda: self._inner.capabilities(project_id, region=region),
        )

    async def get_item(
        self, project_id: str, item_id: str, *, region: str | None = None
    ) -> dict[str, Any]:
        return await self._pacing.call(
            get_key(project_id, region),
            lambda: self._inner.get_item(project_id, item_id, region=region),
        )

    async def replication_records(
        self,
        project_id: str,
        *,
        region: str | None = None,
        source_item_id: str | None = None,
        destination_region: str | None = None,
        status: str | None = None,
    ) -> list[dict[str, Any]]:
        return await self._pacing.call(
            get_key(project_id, region),
            lambda: self._inner.replication_records(
                project_id,
                region=region,
                source_item_id=source_item_id,
                destination_region=destination_region,
                status=status,
            ),
        )

    async def iter_items(
        self,
        project_id: str,
        *,
        region: str | None = None,
        page_size: int = 1000,
        marker: str | None = None,
        **filters: str | int | bool,
    ) -> AsyncIterator[dict[str, Any]]:
        """The inner listing, the pull that asks for each page in its slot."""
        listing = self._inner.iter_items(
            project_id, region=region, page_size=page_size, marker=marker, **filters
        )
        key = get_key(project_id, region)
        every = max(1, page_size)
        pulled = 0
        try:
            while True:
                if pulled % every:
                    item = await anext(listing, None)  # from the page in hand
                else:
                    item = await self._pacing.call(key, lambda: anext(listing, None))
                if item is None:
                    return
                pulled += 1
                yield item
        finally:
            close = getattr(listing, "aclose", None)
            if close is not None:
                await close()
