"""The aiohttp application: CSBS routes, the IAM token route and the ``/_sim`` introspection
routes, with auth, throttling and faults applied in one wrapper.

Order per CSBS request: latency, authentication, throttling, one fault draw, then the
handler. Handlers are synchronous, so each state change is atomic on the event loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from email.utils import formatdate
from typing import Any

import orjson
from aiohttp import web

from orchestrator.errors import ConfigError
from orchestrator.models import PROVIDER_ID
from orchestrator.simulator import query
from orchestrator.simulator.auth import Authenticator
from orchestrator.simulator.cbr import CBR_ROUTES, CbrFace
from orchestrator.simulator.clock import AdvancingClock
from orchestrator.simulator.counters import Counters
from orchestrator.simulator.faults import Fault, FaultInjector
from orchestrator.simulator.records import ITEM_STATUSES
from orchestrator.simulator.refusal import Refusal, invalid
from orchestrator.simulator.state import Estate
from orchestrator.simulator.views import format_time, item_view, record_view

__all__ = ["ROUTES", "SimulatorApp"]

_V1 = "/v1/{project_id}"
REPLICATE = (
    f"POST {_V1}/providers/{{provider_id}}/checkpoint_items/{{checkpoint_item_id}}/replicate"
)
CAPABILITIES = f"GET {_V1}/replication_capabilities"
LIST_ITEMS = f"GET {_V1}/checkpoint_items"
COUNT_ITEMS = f"GET {_V1}/checkpoint_items/count"
GET_ITEM = f"GET {_V1}/checkpoint_items/{{checkpoint_item_id}}"
LIST_RECORDS = f"GET {_V1}/replication_records"
TOKENS = "POST /v3/auth/tokens"
#: The ECS metadata service's temporary credentials (served here so tests never leave loopback).
METADATA = "GET /openstack/latest/securitykey"
METADATA_TOKEN = "PUT /meta-data/latest/api/token"  # noqa: S105 - a route name
UNKNOWN = "unknown"
#: Route names as they appear in the counters (method and path template).
ROUTES = (
    REPLICATE,
    CAPABILITIES,
    LIST_ITEMS,
    COUNT_ITEMS,
    GET_ITEM,
    LIST_RECORDS,
    TOKENS,
    *CBR_ROUTES,
)

_REGION = re.compile(r"^[a-z]{2}(-[a-z0-9]+)+$")
_PROJECT = re.compile(
    r"^([0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$"
)
_MAX_TEXT = 255
#: The destination of a replicate request, kept on the request for the duplicate counter.
_DESTINATION = web.RequestKey("destination_region", str)
#: The source region whose own endpoint (port) the request came to; absent on the shared URL.
_ENDPOINT = web.RequestKey("endpoint_region", str)


def _mark_destination(request: web.Request, region: str) -> None:
    request[_DESTINATION] = region


_Answer = tuple[int, dict[str, Any]]
_Handler = Callable[[web.Request, bytes, str], _Answer]
_Web = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(
    status: int, payload: object, request_id: str, headers: dict[str, str] | None = None
) -> web.Response:
    response = web.Response(
        body=orjson.dumps(payload), status=status, content_type="application/json"
    )
    response.headers["X-Request-Id"] = request_id
    if headers:
        response.headers.update(headers)
    return response


def _refusal_response(refusal: Refusal, request_id: str) -> web.Response:
    body: Mapping[str, object] = refusal.body or {
        "error_code": refusal.code,
        "error_msg": refusal.msg,
        "request_id": request_id,
    }
    if not refusal.code and refusal.body is None:
        # No documented code for this answer (a 503): say none rather than invent one.
        body = {"error_msg": refusal.msg, "request_id": request_id}
    return _json(refusal.status, body, request_id, refusal.headers)


def _drop(request: web.Request) -> web.Response:
    """Cut the connection; the response returned is never written."""
    transport = request.transport
    if transport is not None:
        transport.abort()
    return web.Response(status=500)


def _load_object(body: bytes, what: str) -> dict[str, Any]:
    try:
        data = orjson.loads(body) if body else {}
    except ValueError:
        raise invalid(f"the {what} body is not valid JSON") from None
    if not isinstance(data, dict):
        raise invalid(f"the {what} body must be a JSON object")
    return data


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
        self._clock = clock
        self._info = info
        # Request ids: a random prefix per simulator and a counter, cheaper than uuid4 per
        # request and still unique across restarts.
        self._id_prefix = uuid.uuid4().hex[:16]
        self._id_counter = itertools.count(1)
        self._cbr = CbrFace(
            estate,
            faults,
            on_destination=_mark_destination,
            on_replicated=counters.replicated,
            own_region=lambda request: request.get(_ENDPOINT),
        )

    def _request_id(self) -> str:
        return f"{self._id_prefix}{next(self._id_counter):016x}"

    def build(self) -> web.Application:
        app = web.Application(client_max_size=1024**2)
        add = app.router.add_route
        items = f"{_V1}/checkpoint_items"
        add(
            "POST",
            f"{_V1}/providers/{{provider_id}}/checkpoint_items/{{item_id}}/replicate",
            self._csbs(REPLICATE, self._replicate, replicate=True),
        )
        add("GET", f"{_V1}/replication_capabilities", self._csbs(CAPABILITIES, self._capabilities))
        add("GET", items, self._csbs(LIST_ITEMS, self._list_items))
        # Registered before ``{item_id}`` so that "count" is not taken for an id.
        add("GET", f"{items}/count", self._csbs(COUNT_ITEMS, self._count_items))
        add("GET", f"{items}/{{item_id}}", self._csbs(GET_ITEM, self._get_item))
        if self._records_endpoint:
            add("GET", f"{_V1}/replication_records", self._csbs(LIST_RECORDS, self._list_records))
        self._cbr.add_routes(add, self._csbs)
        add("GET", "/_sim/vaults", self._sim(lambda _: {"vaults": self._cbr.vaults()}))
        add("POST", "/v3/auth/tokens", self._tokens)
        add("GET", "/openstack/latest/securitykey", self._security_key)
        if self._metadata_tokens:
            add("PUT", "/meta-data/latest/api/token", self._metadata_token)
        add("GET", "/_sim/counters", self._sim(lambda _: self._counters.snapshot()))
        add("GET", "/_sim/info", self._sim(lambda _: self._info()))
        add("GET", "/_sim/faults", self._sim(lambda _: self._fault_view()))
        add("POST", "/_sim/faults", self._sim(self._set_faults))
        add("POST", "/_sim/items", self._sim(self._add_items))
        add("POST", "/_sim/advance", self._sim(self._advance))
        add("POST", "/_sim/revoke", self._sim(self._revoke))
        add("*", "/{tail:.*}", self._unknown)
        return app

    # ---- the CSBS wrapper ---------------------------------------------------------

    def _csbs(self, route: str, handler: _Handler, *, replicate: bool = False) -> _Web:
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
                response = _refusal_response(refusal, request_id)
            self._counters.request(route, "dropped" if response is None else response.status)
            if response is None:
                return _drop(request)
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
        return _json(status, payload, request_id)

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

    # ---- CSBS handlers ------------------------------------------------------------

    def _replicate(self, request: web.Request, body: bytes, project_id: str) -> _Answer:
        if request.match_info["provider_id"] != PROVIDER_ID:
            raise invalid(f"invalid provider_id {request.match_info['provider_id']}")
        replication = _load_object(body, "replicate").get("replication")
        if not isinstance(replication, dict):
            raise invalid('the body must be {"replication": {...}}')
        region = replication.get("destination_region")
        if not isinstance(region, str) or not _REGION.match(region):
            raise invalid("destination_region is missing or invalid")
        destination_project = replication.get("destination_project_id")
        if not isinstance(destination_project, str) or not _PROJECT.match(destination_project):
            raise invalid("destination_project_id is missing or invalid")
        name = replication.get("name", "")
        description = replication.get("description", "")
        acceleration = replication.get("enable_acceleration", False)
        if not isinstance(name, str) or len(name) > _MAX_TEXT:
            raise invalid("name must be a string of at most 255 characters")
        if not isinstance(description, str) or len(description) > _MAX_TEXT:
            raise invalid("description must be a string of at most 255 characters")
        if not isinstance(acceleration, bool):
            raise invalid("enable_acceleration must be a boolean")
        request[_DESTINATION] = region
        item_id = request.match_info["item_id"]
        try:
            record = self._estate.replicate(
                project_id,
                item_id,
                region,
                destination_project,
                limits=self._faults.config,
                name=name,
                enable_acceleration=acceleration,
            )
        except Refusal as refusal:
            if refusal.kind == "capacity":
                refusal.headers.update(self._faults.retry_after_headers())
            raise
        self._counters.replicated(item_id, region)
        return 200, {
            "replication": {
                "project_id": project_id,
                "provider_id": PROVIDER_ID,
                "checkpoint_item_id": item_id,
                "source_region": record.item.region,
                "destination_region": region,
                "destination_project_id": destination_project,
                "replication_record_id": record.id,
            }
        }

    def _capabilities(self, request: web.Request, _body: bytes, _project_id: str) -> _Answer:
        # A region's own endpoint answers for that region only, as the real one does.
        own = request.get(_ENDPOINT)
        regions = [
            {"name": region, "replication_destinations": list(destinations)}
            for region, destinations in self._estate.capabilities().items()
            if own is None or region == own
        ]
        return 200, {"regions": regions}

    def _item_json(self, request: web.Request, item_id: str, project_id: str) -> dict[str, Any]:
        item = self._estate.item(project_id, item_id)
        return item_view(
            item,
            list(self._estate.records_of(item)),
            self._estate.now(),
            regional=_ENDPOINT in request,
        )

    def _list_items(self, request: web.Request, _body: bytes, project_id: str) -> _Answer:
        page = query.paging(request.query)
        items = self._estate.list_items(
            project_id,
            query.item_filter(request.query),
            sort=query.sort_spec(request.query),
            marker=page.marker,
            offset=page.offset,
            limit=page.limit,
        )
        now = self._estate.now()
        regional = _ENDPOINT in request
        views = [
            item_view(i, list(self._estate.records_of(i)), now, regional=regional) for i in items
        ]
        return 200, {"checkpoint_items": views}

    def _count_items(self, request: web.Request, _body: bytes, project_id: str) -> _Answer:
        count = self._estate.count_items(project_id, query.item_filter(request.query))
        return 200, {"count": count}

    def _get_item(self, request: web.Request, _body: bytes, project_id: str) -> _Answer:
        item_id = request.match_info["item_id"]
        return 200, {"checkpoint_item": self._item_json(request, item_id, project_id)}

    def _list_records(self, request: web.Request, _body: bytes, project_id: str) -> _Answer:
        page = query.paging(request.query)
        records, count = self._estate.list_records(
            project_id,
            query.record_filter(request.query),
            marker=page.marker,
            offset=page.offset,
            limit=page.limit,
        )
        now = self._estate.now()
        return 200, {"replication_records": [record_view(r, now) for r in records], "count": count}

    # ---- IAM ----------------------------------------------------------------------

    async def _tokens(self, request: web.Request) -> web.StreamResponse:
        request_id = self._request_id()
        try:
            issued = self._auth.issue_token(await request.read())
        except Refusal as refusal:
            self._counters.request(TOKENS, refusal.status)
            return _refusal_response(refusal, request_id)
        self._counters.request(TOKENS, 201)
        return _json(201, issued.body, request_id, {"X-Subject-Token": issued.token})

    async def _security_key(self, request: web.Request) -> web.StreamResponse:
        try:
            key = self._auth.issue_temporary_key(request.headers.get("X-Metadata-Token"))
        except Refusal as refusal:
            self._counters.request(METADATA, refusal.status)
            return _refusal_response(refusal, self._request_id())
        self._counters.request(METADATA, 200)
        return _json(200, key, self._request_id())

    async def _metadata_token(self, _request: web.Request) -> web.StreamResponse:
        self._counters.request(METADATA_TOKEN, 200)
        return web.Response(text=self._auth.issue_metadata_token())

    async def _unknown(self, request: web.Request) -> web.StreamResponse:
        self._counters.request(UNKNOWN, 404)
        refusal = Refusal(404, "APIGW.0101", "The API does not exist or has not been published.")
        return _refusal_response(refusal, self._request_id())

    # ---- /_sim --------------------------------------------------------------------

    def _sim(self, handler: Callable[[dict[str, Any]], dict[str, Any]]) -> _Web:
        """Introspection routes: never authenticated, faulted or counted."""

        async def serve(request: web.Request) -> web.StreamResponse:
            request_id = self._request_id()
            try:
                payload = handler(_load_object(await request.read(), "request"))
            except Refusal as refusal:
                return _refusal_response(refusal, request_id)
            except ConfigError as exc:
                return _json(400, {"error_code": "SIM.0400", "error_msg": str(exc)}, request_id)
            return _json(200, payload, request_id)

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
