"""The CSBS v1 face of the simulator: replicate, capabilities, checkpoint items (list, count,
one) and replication records, over the estate.

Like the CBR face (:mod:`orchestrator.simulator.cbr`), its handlers are plain functions of a
request that the app's wrapper (auth, throttling, faults, counters) calls.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from orchestrator.models import PROVIDER_ID
from orchestrator.simulator import query
from orchestrator.simulator.face import destination, options, start_replication
from orchestrator.simulator.faults import FaultInjector
from orchestrator.simulator.refusal import invalid
from orchestrator.simulator.responses import load_object
from orchestrator.simulator.state import Estate
from orchestrator.simulator.views import item_view, record_view

__all__ = [
    "CAPABILITIES",
    "COUNT_ITEMS",
    "CSBS_ROUTES",
    "GET_ITEM",
    "LIST_ITEMS",
    "LIST_RECORDS",
    "REPLICATE",
    "CsbsFace",
]

_V1 = "/v1/{project_id}"
REPLICATE = (
    f"POST {_V1}/providers/{{provider_id}}/checkpoint_items/{{checkpoint_item_id}}/replicate"
)
CAPABILITIES = f"GET {_V1}/replication_capabilities"
LIST_ITEMS = f"GET {_V1}/checkpoint_items"
COUNT_ITEMS = f"GET {_V1}/checkpoint_items/count"
GET_ITEM = f"GET {_V1}/checkpoint_items/{{checkpoint_item_id}}"
LIST_RECORDS = f"GET {_V1}/replication_records"
#: Route names as they appear in the counters (method and path template).
CSBS_ROUTES = (REPLICATE, CAPABILITIES, LIST_ITEMS, COUNT_ITEMS, GET_ITEM, LIST_RECORDS)

_Answer = tuple[int, dict[str, Any]]
_Wrap = Callable[..., Callable[[web.Request], Any]]


class CsbsFace:
    """The ``/v1/{project_id}/...`` routes over an :class:`Estate`.

    ``own_region(request)`` is the source region whose own endpoint the request came to (None
    on the shared URL); ``on_destination`` and ``on_replicated`` tell the counters.
    """

    def __init__(
        self,
        estate: Estate,
        faults: FaultInjector,
        *,
        on_destination: Callable[[web.Request, str], None],
        on_replicated: Callable[[str, str], None],
        own_region: Callable[[web.Request], str | None],
    ) -> None:
        self._estate = estate
        self._faults = faults
        self._on_destination = on_destination
        self._on_replicated = on_replicated
        self._own_region = own_region

    def add_routes(self, add: Callable[..., Any], wrap: _Wrap, *, records_endpoint: bool) -> None:
        items = f"{_V1}/checkpoint_items"
        add(
            "POST",
            f"{_V1}/providers/{{provider_id}}/checkpoint_items/{{item_id}}/replicate",
            wrap(REPLICATE, self._replicate, replicate=True),
        )
        add("GET", f"{_V1}/replication_capabilities", wrap(CAPABILITIES, self._capabilities))
        add("GET", items, wrap(LIST_ITEMS, self._list_items))
        # Registered before ``{item_id}`` so that "count" is not taken for an id.
        add("GET", f"{items}/count", wrap(COUNT_ITEMS, self._count_items))
        add("GET", f"{items}/{{item_id}}", wrap(GET_ITEM, self._get_item))
        if records_endpoint:
            add("GET", f"{_V1}/replication_records", wrap(LIST_RECORDS, self._list_records))

    # ---- handlers ---------------------------------------------------------------------

    def _replicate(self, request: web.Request, body: bytes, project_id: str) -> _Answer:
        if request.match_info["provider_id"] != PROVIDER_ID:
            raise invalid(f"invalid provider_id {request.match_info['provider_id']}")
        replication = load_object(body, "replicate").get("replication")
        if not isinstance(replication, dict):
            raise invalid('the body must be {"replication": {...}}')
        region, destination_project = destination(replication)
        name, _description, acceleration = options(replication)
        self._on_destination(request, region)
        item_id = request.match_info["item_id"]
        record = start_replication(
            self._estate,
            self._faults,
            project_id=project_id,
            item_id=item_id,
            region=region,
            destination_project=destination_project,
            name=name,
            acceleration=acceleration,
        )
        self._on_replicated(item_id, region)
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
        own = self._own_region(request)
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
            regional=self._own_region(request) is not None,
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
        regional = self._own_region(request) is not None
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
