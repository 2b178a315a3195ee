"""The aiohttp application: the CSBS and CBR faces, the IAM token and ECS metadata routes and
the ``/_sim`` introspection routes, with auth, throttling and faults applied in one wrapper.

Order per CSBS or CBR request: latency, authentication, throttling, one fault draw, then the
handler. Handlers are synchronous, so each state change is atomic on the event loop.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from typing import Any

from aiohttp import web

from orchestrator.simulator.auth import Authenticator
from orchestrator.simulator.cbr import CBR_ROUTES, CbrFace
from orchestrator.simulator.clock import AdvancingClock
from orchestrator.simulator.counters import Counters
from orchestrator.simulator.csbs import CSBS_ROUTES, CsbsFace
from orchestrator.simulator.faults import Fault, FaultInjector
from orchestrator.simulator.introspection import Introspection
from orchestrator.simulator.refusal import Refusal, invalid
from orchestrator.simulator.responses import drop, json_response, refusal_response
from orchestrator.simulator.state import Estate

__all__ = ["METADATA", "METADATA_TOKEN", "ROUTES", "TOKENS", "UNKNOWN", "SimulatorApp"]

TOKENS = "POST /v3/auth/tokens"
#: The ECS metadata service's temporary credentials (served here so tests never leave loopback).
METADATA = "GET /openstack/latest/securitykey"
METADATA_TOKEN = "PUT /meta-data/latest/api/token"  # noqa: S105 - a route name
UNKNOWN = "unknown"
#: Route names as they appear in the counters (method and path template).
ROUTES = (*CSBS_ROUTES, TOKENS, *CBR_ROUTES)

#: The destination of a replicate request, kept on the request for the duplicate counter.
_DESTINATION = web.RequestKey("destination_region", str)
#: The source region whose own endpoint (port) the request came to; absent on the shared URL.
_ENDPOINT = web.RequestKey("endpoint_region", str)


def _mark_destination(request: web.Request, region: str) -> None:
    request[_DESTINATION] = region


def _own_region(request: web.Request) -> str | None:
    return request.get(_ENDPOINT)


_Answer = tuple[int, dict[str, Any]]
_Handler = Callable[[web.Request, bytes, str], _Answer]
_Web = Callable[[web.Request], Awaitable[web.StreamResponse]]


class SimulatorApp:
    """Routes over one estate. ``info`` supplies the ``GET /_sim/info`` document."""

    def __init__(
        self,
        estate: Estate,
        *,
        auth: Authenticator,
        faults: FaultInjector,
        counters: Counters,
        clock: AdvancingClock,
        info: Callable[[], dict[str, Any]],
        records_endpoint: bool = True,
        region_ports: dict[int, str] | None = None,
        metadata_tokens: bool = True,
    ) -> None:
        self._estate = estate
        self._metadata_tokens = metadata_tokens
        # Local port -> the source region served there (filled in once the sites listen).
        # The real service has one endpoint per source region; the shared URL is not in it.
        self._region_ports = region_ports if region_ports is not None else {}
        self._records_endpoint = records_endpoint
        self._auth = auth
        self._faults = faults
        self._counters = counters
        # Request ids: a random prefix per simulator and a counter, cheaper than uuid4 per
        # request and still unique across restarts.
        self._id_prefix = uuid.uuid4().hex[:16]
        self._id_counter = itertools.count(1)
        self._csbs_face = CsbsFace(
            estate,
            faults,
            on_destination=_mark_destination,
            on_replicated=counters.replicated,
            own_region=_own_region,
        )
        self._cbr = CbrFace(
            estate,
            faults,
            on_destination=_mark_destination,
            on_replicated=counters.replicated,
            own_region=_own_region,
        )
        self._introspection = Introspection(
            estate,
            auth=auth,
            faults=faults,
            counters=counters,
            clock=clock,
            info=info,
            vaults=self._cbr.vaults,
            request_id=self._request_id,
        )

    def _request_id(self) -> str:
        return f"{self._id_prefix}{next(self._id_counter):016x}"

    def build(self) -> web.Application:
        app = web.Application(client_max_size=1024**2)
        add = app.router.add_route
        self._csbs_face.add_routes(add, self._wrap, records_endpoint=self._records_endpoint)
        self._cbr.add_routes(add, self._wrap)
        add("POST", "/v3/auth/tokens", self._tokens)
        add("GET", "/openstack/latest/securitykey", self._security_key)
        if self._metadata_tokens:
            add("PUT", "/meta-data/latest/api/token", self._metadata_token)
        self._introspection.add_routes(add)
        add("*", "/{tail:.*}", self._unknown)
        return app

    # ---- the wrapper of every CSBS and CBR request -----------------------------------------

    def _wrap(self, route: str, handler: _Handler, *, replicate: bool = False) -> _Web:
        async def serve(request: web.Request) -> web.StreamResponse:
            request_id = self._request_id()
            if replicate:
                self._counters.arrived()
            faulty = self._faults.applies(replicate)
            if faulty:
                delay = self._faults.latency()
                if delay > 0:
                    await asyncio.sleep(delay)
            try:
                body = await request.read()
            except ConnectionResetError:
                # The client went away mid-request (killed, say): nothing to answer, and not
                # an error of the service worth a logged traceback.
                return web.Response(status=499)
            try:
                response = self._answer(
                    request, body, handler=handler, request_id=request_id, faulty=faulty
                )
            except Refusal as refusal:
                self._count_refusal(refusal, request)
                response = refusal_response(refusal, request_id)
            self._counters.request(route, "dropped" if response is None else response.status)
            if response is None:
                return drop(request)
            # The service's clock, which a client compares record times with.
            response.headers["Date"] = formatdate(self._estate.now(), usegmt=True)
            return response

        return serve

    def _answer(
        self,
        request: web.Request,
        body: bytes,
        *,
        handler: _Handler,
        request_id: str,
        faulty: bool,
    ) -> web.Response | None:
        """The response to send, or None to cut the connection instead."""
        project_id = request.match_info["project_id"]
        if self._region_ports:
            self._check_endpoint(request, project_id)
        self._auth.check(
            method=request.method,
            raw_path=request.rel_url.raw_path,
            query=request.query.items(),
            headers=request.headers,
            body=body,
            project_id=project_id,
        )
        fault = Fault.NONE
        if faulty:
            self._faults.throttle(project_id)
            fault = self._faults.draw()
            if fault is not Fault.NONE:
                self._counters.fault(fault.value)
            if fault is Fault.DROP:
                return None
            if fault is Fault.ERROR_503:
                raise Refusal(
                    503,
                    "",  # CSBS documents 503 "unavailable" without a code
                    "Service unavailable (injected).",
                    headers=self._faults.retry_after_headers(),
                )
            if fault is Fault.ERROR_500:
                raise Refusal(500, "CSBS.9999", "Operation failed (injected).")
            if fault is Fault.MALFORMED:
                status, content_type, text = self._faults.malformed()
                response = web.Response(body=text, status=status, content_type=content_type)
                response.headers["X-Request-Id"] = request_id
                return response
        status, payload = handler(request, body, project_id)
        if fault is Fault.APPLY_DROP:
            return None
        return json_response(status, payload, request_id)

    def _check_endpoint(self, request: web.Request, project_id: str) -> None:
        """On a region's own endpoint, only that region's projects exist."""
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        region = self._region_ports.get(sockname[1]) if sockname else None
        if region is None:
            return  # the shared URL: every region
        request[_ENDPOINT] = region
        project = self._estate.project(project_id)
        if project is not None and project.region != region:
            # Unconfirmed what the real service answers; a project of another region is not
            # this endpoint's to serve. A 400 fails the request, not the credentials.
            raise invalid(
                f"project {project_id} is not in region {region}; call that region's endpoint"
            )

    def _count_refusal(self, refusal: Refusal, request: web.Request) -> None:
        if refusal.kind == "duplicate":
            item_id = request.match_info["item_id"]
            self._counters.duplicate(item_id, request.get(_DESTINATION, ""))
        elif refusal.kind:
            self._counters.fault(refusal.kind)

    # ---- IAM ----------------------------------------------------------------------

    async def _tokens(self, request: web.Request) -> web.StreamResponse:
        request_id = self._request_id()
        try:
            issued = self._auth.issue_token(await request.read())
        except Refusal as refusal:
            self._counters.request(TOKENS, refusal.status)
            return refusal_response(refusal, request_id)
        self._counters.request(TOKENS, 201)
        return json_response(201, issued.body, request_id, {"X-Subject-Token": issued.token})

    async def _security_key(self, request: web.Request) -> web.StreamResponse:
        try:
            key = self._auth.issue_temporary_key(request.headers.get("X-Metadata-Token"))
        except Refusal as refusal:
            self._counters.request(METADATA, refusal.status)
            return refusal_response(refusal, self._request_id())
        self._counters.request(METADATA, 200)
        return json_response(200, key, self._request_id())

    async def _metadata_token(self, _request: web.Request) -> web.StreamResponse:
        self._counters.request(METADATA_TOKEN, 200)
        return web.Response(text=self._auth.issue_metadata_token())

    async def _unknown(self, request: web.Request) -> web.StreamResponse:
        self._counters.request(UNKNOWN, 404)
        refusal = Refusal(404, "APIGW.0101", "The API does not exist or has not been published.")
        return refusal_response(refusal, self._request_id())
