"""The ``/_sim`` routes: what tests and demos ask of the simulator itself (counters, info,
faults, vaults) and tell it (new items, time advanced, credentials revoked). They are never
authenticated, faulted or counted."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from aiohttp import web

from orchestrator.errors import ConfigError
from orchestrator.simulator.auth import Authenticator
from orchestrator.simulator.clock import AdvancingClock
from orchestrator.simulator.counters import Counters
from orchestrator.simulator.faults import FaultInjector
from orchestrator.simulator.records import ITEM_STATUSES
from orchestrator.simulator.refusal import Refusal, invalid
from orchestrator.simulator.responses import json_response, load_object, refusal_response
from orchestrator.simulator.state import Estate
from orchestrator.simulator.views import format_time

__all__ = ["Introspection"]

_Web = Callable[[web.Request], Any]


class Introspection:
    """The ``/_sim`` routes over the simulator's parts. ``info`` supplies ``GET /_sim/info``,
    ``vaults`` ``GET /_sim/vaults``; ``request_id`` numbers the answers as the app does."""

    def __init__(
        self,
        estate: Estate,
        *,
        auth: Authenticator,
        faults: FaultInjector,
        counters: Counters,
        clock: AdvancingClock,
        info: Callable[[], dict[str, Any]],
        vaults: Callable[[], list[dict[str, str]]],
        request_id: Callable[[], str],
    ) -> None:
        self._estate = estate
        self._auth = auth
        self._faults = faults
        self._counters = counters
        self._clock = clock
        self._info = info
        self._vaults = vaults
        self._request_id = request_id

    def add_routes(self, add: Callable[..., Any]) -> None:
        add("GET", "/_sim/vaults", self._sim(lambda _: {"vaults": self._vaults()}))
        add("GET", "/_sim/counters", self._sim(lambda _: self._counters.snapshot()))
        add("GET", "/_sim/info", self._sim(lambda _: self._info()))
        add("GET", "/_sim/faults", self._sim(lambda _: self._fault_view()))
        add("POST", "/_sim/faults", self._sim(self._set_faults))
        add("POST", "/_sim/items", self._sim(self._add_items))
        add("POST", "/_sim/advance", self._sim(self._advance))
        add("POST", "/_sim/revoke", self._sim(self._revoke))

    def _sim(self, handler: Callable[[dict[str, Any]], dict[str, Any]]) -> _Web:
        async def serve(request: web.Request) -> web.StreamResponse:
            request_id = self._request_id()
            try:
                payload = handler(load_object(await request.read(), "request"))
            except Refusal as refusal:
                return refusal_response(refusal, request_id)
            except ConfigError as exc:
                return json_response(
                    400, {"error_code": "SIM.0400", "error_msg": str(exc)}, request_id
                )
            return json_response(200, payload, request_id)

        return serve

    def _fault_view(self) -> dict[str, Any]:
        return {"faults": dataclasses.asdict(self._faults.config)}

    def _set_faults(self, changes: dict[str, Any]) -> dict[str, Any]:
        self._faults.update(changes)
        return self._fault_view()

    def _add_items(self, spec: dict[str, Any]) -> dict[str, Any]:
        project_id = spec.get("project_id", self._estate.projects[0].id)
        count = spec.get("count", 1)
        status = spec.get("status", "available")
        if self._estate.project(project_id) is None:
            raise invalid(f"unknown project {project_id!r}")
        if not isinstance(count, int) or isinstance(count, bool) or not 0 < count <= 100_000:
            raise invalid("count must be an integer in 1..100000")
        if status not in ITEM_STATUSES:
            raise invalid(f"unknown status {status!r}")
        items = self._estate.add_items(project_id, count, status=status)
        return {
            "checkpoint_items": [
                {
                    "id": i.id,
                    "project_id": i.project_id,
                    "source_region": i.region,
                    "status": i.status,
                }
                for i in items
            ]
        }

    def _advance(self, spec: dict[str, Any]) -> dict[str, Any]:
        seconds = spec.get("seconds")
        if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds < 0:
            raise invalid("seconds must be a number >= 0")
        self._clock.advance(float(seconds))
        now = self._clock.now()
        return {"now": format_time(now), "now_s": now}

    def _revoke(self, spec: dict[str, Any]) -> dict[str, Any]:
        revoked = 0
        if spec.get("tokens") is True:
            revoked = self._auth.revoke_tokens()
        elif isinstance(spec.get("token"), str):
            revoked = self._auth.revoke_tokens(spec["token"])
        if isinstance(spec.get("ak"), str):
            self._auth.revoke_key(spec["ak"])
        return {"revoked_tokens": revoked}
