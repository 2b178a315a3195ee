"""The estate: a seeded, deterministic set of projects, backups and replication records, and
the replicate rule (available, capable, not a duplicate, under capacity).

Every lookup on the replicate path is a dict access or a heap operation: estates of 100k+
items must answer thousands of replicates per second. Listings sort lazily, once per
(project, sort order), and reuse the order until items are added to that project.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterable, Sequence
from itertools import islice

from orchestrator.simulator.clock import Clock
from orchestrator.simulator.config import FaultConfig, SimulatorConfig
from orchestrator.simulator.filters import (
    DEFAULT_SORT,
    SORT_ATTRS,
    ItemFilter,
    RecordFilter,
    SortSpec,
)
from orchestrator.simulator.records import BUSY, Item, Project, Record
from orchestrator.simulator.refusal import Refusal, invalid
from orchestrator.simulator.seeding import Seeder, hex32, new_item, uuid4

__all__ = ["Estate"]


def _prune(heap: list[float], now: float) -> None:
    """Drop the end times that have passed from a heap of in-flight replications."""
    while heap and heap[0] <= now:
        heapq.heappop(heap)


class Estate:
    """Projects, items and replication records, generated from ``config.seed``."""

    def __init__(self, config: SimulatorConfig, clock: Clock) -> None:
        self._config = config
        self._clock = clock
        seed = config.seed
        # Separate streams so that, e.g., adding items does not shift record ids.
        self._gen = random.Random(f"estate:{seed}")
        self._added = random.Random(f"added:{seed}")
        self._ids = random.Random(f"records:{seed}")
        self._outcomes = random.Random(f"outcomes:{seed}")
        self.projects: tuple[Project, ...] = tuple(
            Project(hex32(self._gen), region)
            for region in config.regions
            for _ in range(config.projects_per_region)
        )
        self._projects = {p.id: p for p in self.projects}
        self.destination_projects = self._destination_projects()
        self._policies = {p.id: [uuid4(self._gen) for _ in range(3)] for p in self.projects}
        self._items: dict[str, Item] = {}
        self._by_project: dict[str, list[Item]] = {p.id: [] for p in self.projects}
        self._records: dict[str, Record] = {}
        self._records_by_item: dict[str, list[Record]] = {}
        self._records_by_project: dict[str, list[Record]] = {p.id: [] for p in self.projects}
        self._latest: dict[tuple[str, str], Record] = {}
        self._in_flight: dict[str, list[float]] = {}  # destination region -> heap of end_at
        self._sorted: dict[tuple[str, SortSpec], tuple[list[Item], dict[str, int]]] = {}
        seeder = Seeder(
            self, config, clock, self._gen, projects=self.projects, policies=self._policies
        )
        if config.age_days:
            seeder.generate_aged(config.items, config.age_days)
        else:
            seeder.generate(config.items)

    @property
    def config(self) -> SimulatorConfig:
        """The knobs this estate was made from."""
        return self._config

    # ---- generation (see seeding.py) -----------------------------------------------------

    def _destination_projects(self) -> dict[str, str]:
        """One destination project per region: the estate's own project where it has one
        (same account), otherwise a generated id."""
        regions = sorted({d for dests in self._config.capabilities.values() for d in dests})
        own = {p.region: p.id for p in reversed(self.projects)}
        return {r: own.get(r) or hex32(self._gen) for r in regions}

    def insert(self, item: Item) -> None:
        self._items[item.id] = item
        self._by_project[item.project_id].append(item)

    def add_record(
        self,
        item: Item,
        destination: str,
        *,
        start: float,
        fails: bool,
        skips: bool = False,
        name: str = "",
        enable_acceleration: bool = False,
        destination_project_id: str | None = None,
    ) -> Record:
        project_records = self._records_by_project[item.project_id]
        copy_at = start + self._config.copy_wait_s
        record = Record(
            id=uuid4(self._ids),
            item=item,
            destination_region=destination,
            destination_project_id=destination_project_id or self.destination_projects[destination],
            destination_checkpoint_id=uuid4(self._ids),
            destination_checkpoint_item_id=uuid4(self._ids),
            created_at=start,
            copy_at=copy_at,
            # A skipped replication ends when it would have started copying.
            end_at=copy_at if skips else copy_at + self._config.copy_duration_s,
            fails=fails,
            skips=skips,
            seq=len(project_records),
            name=name,
            enable_acceleration=enable_acceleration,
        )
        self._records[record.id] = record
        self._records_by_item.setdefault(item.id, []).append(record)
        project_records.append(record)
        self._latest[(item.id, destination)] = record
        now = self._clock.now()
        if record.end_at > now:
            heap = self._in_flight.setdefault(destination, [])
            _prune(heap, now)  # keeps the heap as small as what is really in flight
            heapq.heappush(heap, record.end_at)
        return record

    # ---- queries ----------------------------------------------------------------------

    def now(self) -> float:
        return self._clock.now()

    def project(self, project_id: str) -> Project | None:
        return self._projects.get(project_id)

    def capabilities(self) -> dict[str, tuple[str, ...]]:
        return {r: tuple(self._config.capabilities[r]) for r in self._config.regions}

    def item(self, project_id: str, item_id: str) -> Item:
        item = self._items.get(item_id)
        if item is None or item.project_id != project_id:
            raise Refusal(404, "CSBS.3001", f"The checkpoint item {item_id} could not be found.")
        return item

    def items_of(self, project_id: str) -> Sequence[Item]:
        return self._by_project.get(project_id, ())

    def records_of(self, item: Item) -> Sequence[Record]:
        return self._records_by_item.get(item.id, ())

    def latest_record(self, item_id: str, destination_region: str) -> Record | None:
        return self._latest.get((item_id, destination_region))

    def record(self, record_id: str) -> Record | None:
        return self._records.get(record_id)

    def list_items(
        self,
        project_id: str,
        flt: ItemFilter,
        *,
        sort: SortSpec = DEFAULT_SORT,
        marker: str | None = None,
        offset: int = 0,
        limit: int = 1000,
    ) -> list[Item]:
        ordered, positions = self._ordered(project_id, sort)
        start = 0
        if marker is not None:
            if marker not in positions:
                raise invalid(f"marker {marker} is not a checkpoint item of this project")
            start = positions[marker] + 1
        matching: Iterable[Item] = islice(ordered, start, None)
        if not flt.is_empty():
            matching = (item for item in matching if flt.matches(item))
        return list(islice(matching, offset, offset + limit))

    def count_items(self, project_id: str, flt: ItemFilter) -> int:
        items = self.items_of(project_id)
        if flt.is_empty():
            return len(items)
        return sum(1 for item in items if flt.matches(item))

    def _ordered(self, project_id: str, sort: SortSpec) -> tuple[list[Item], dict[str, int]]:
        cached = self._sorted.get((project_id, sort))
        if cached is None:
            ordered = sorted(self.items_of(project_id), key=SORT_ATTRS["id"])
            # Stable sorts from the last key to the first give a multi-key order.
            for key, descending in reversed(sort):
                ordered.sort(key=SORT_ATTRS[key], reverse=descending)
            cached = (ordered, {item.id: i for i, item in enumerate(ordered)})
            self._sorted[(project_id, sort)] = cached
        return cached

    def list_records(
        self,
        project_id: str,
        flt: RecordFilter,
        *,
        marker: str | None = None,
        offset: int = 0,
        limit: int = 1000,
    ) -> tuple[list[Record], int]:
        """Newest first; returns (page, number of records matching the filter)."""
        if flt.checkpoint_item_id is not None:
            candidates: Sequence[Record] = self._records_by_item.get(flt.checkpoint_item_id, ())
        else:
            candidates = self._records_by_project.get(project_id, ())
        below = len(self._records_by_project.get(project_id, ()))
        if marker is not None:
            marked = self._records.get(marker)
            if marked is None or marked.item.project_id != project_id:
                raise invalid(f"marker {marker} is not a replication record of this project")
            below = marked.seq
        now = self._clock.now()
        page: list[Record] = []
        count = 0
        skipped = 0
        for record in reversed(candidates):
            if record.item.project_id != project_id or not flt.matches(record, now):
                continue
            count += 1
            if record.seq >= below or len(page) >= limit:
                continue
            if skipped < offset:
                skipped += 1
            else:
                page.append(record)
        return page, count

    def in_flight(self, destination_region: str | None) -> int:
        """Replications still waiting or copying, to one region or (None) to any."""
        now = self._clock.now()
        regions = self._in_flight if destination_region is None else (destination_region,)
        total = 0
        for region in regions:
            heap = self._in_flight.get(region)
            if heap:
                _prune(heap, now)
                total += len(heap)
        return total

    # ---- changes ----------------------------------------------------------------------

    def replicate(
        self,
        project_id: str,
        item_id: str,
        destination_region: str,
        destination_project_id: str,
        *,
        limits: FaultConfig,
        name: str = "",
        enable_acceleration: bool = False,
    ) -> Record:
        """Start a replication, or raise the :class:`Refusal` the service would answer."""
        item = self.item(project_id, item_id)
        if item.status != "available":
            code = "CSBS.2003" if item.status in BUSY else "CSBS.4000"
            raise Refusal(
                400, code, f"The checkpoint item {item_id} is {item.status}, not available."
            )
        if destination_region not in self._config.capabilities.get(item.region, ()):
            raise Refusal(
                400,
                "BackupService.1005",
                f"The destination region {destination_region} does not support replication "
                f"from {item.region}.",
            )
        latest = self._latest.get((item.id, destination_region))
        if latest is not None and latest.blocks_duplicate(self._clock.now()):
            raise Refusal(
                self._config.duplicate_status,
                self._config.duplicate_code,
                self._config.duplicate_msg,
                kind="duplicate",
            )
        if limits.max_in_flight:
            scope = destination_region if limits.capacity_scope == "region" else None
            if self.in_flight(scope) >= limits.max_in_flight:
                # CSBS documents no code for "too many replications": a code-less 503 (the
                # documented "unavailable"), never CSBS.0001, which means a policy quota.
                raise Refusal(
                    503,
                    "",
                    "Too many replication tasks are in progress; try again later.",
                    kind="capacity",
                )
        draw = self._outcomes.random()
        fails = draw < limits.copy_fail_rate
        skips = not fails and draw < limits.copy_fail_rate + limits.copy_skip_rate
        return self.add_record(
            item,
            destination_region,
            start=self._clock.now(),
            fails=fails,
            skips=skips,
            name=name,
            enable_acceleration=enable_acceleration,
            destination_project_id=destination_project_id,
        )

    def add_items(self, project_id: str, count: int, *, status: str = "available") -> list[Item]:
        """New backups (``POST /_sim/items``), created now, in one project."""
        project = self._projects[project_id]
        # Finished an hour ago, so that protected_at is not in the future.
        created = self._clock.now() - 3600
        policies = self._policies[project_id]
        items = [new_item(self._added, project, created, status, policies) for _ in range(count)]
        for item in items:
            self.insert(item)
        for key in [k for k in self._sorted if k[0] == project_id]:
            del self._sorted[key]
        return items
