"""The estate: a seeded, deterministic set of projects, backups and replication records, and
the replicate rule (available, capable, not a duplicate, under capacity).

Every lookup on the replicate path is a dict access or a heap operation: estates of 100k+
items must answer thousands of replicates per second. Listings sort lazily, once per
(project, sort order), and reuse the order until items are added to that project.
"""

from __future__ import annotations

import heapq
import operator
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from itertools import islice
from typing import Any

from orchestrator.simulator.clock import Clock
from orchestrator.simulator.config import FaultConfig, SimulatorConfig
from orchestrator.simulator.records import Item, Project, Record
from orchestrator.simulator.refusal import Refusal, invalid

__all__ = ["BASE_EPOCH", "Estate", "ItemFilter", "RecordFilter", "SortSpec"]

#: Generated backups are spread over the year after this instant (2024-01-01T00:00:00Z).
BASE_EPOCH = 1_704_067_200.0
_YEAR_S = 365 * 86400.0

_BUSY = frozenset(
    {"waiting_protect", "protecting", "waiting_restore", "restoring", "waiting_delete", "deleting"}
)
_WORDS = ("web", "db", "cache", "api", "batch", "mq", "auth", "etl", "front", "search")
# The version (4) and variant (RFC 4122) bits of a random UUID.
_UUID_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID_SET = (0x4000 << 64) | (0x8000 << 48)
SORT_KEYS = frozenset({"created_at", "updated_at", "name", "status", "protected_at", "id"})

#: ((key, descending), ...) as parsed from ``sort=created_at:desc,name:asc``.
SortSpec = tuple[tuple[str, bool], ...]
DEFAULT_SORT: SortSpec = (("created_at", True),)

_SORT_ATTRS: dict[str, Callable[[Item], Any]] = {
    "created_at": operator.attrgetter("created_at"),
    "updated_at": operator.attrgetter("protected_at"),
    "protected_at": operator.attrgetter("protected_at"),
    "name": operator.attrgetter("name"),
    "status": operator.attrgetter("status"),
    "id": operator.attrgetter("id"),
}


def _uuid(rng: random.Random) -> str:
    """A random (version 4) UUID from ``rng``; formatted by hand, as uuid.UUID costs 4x more
    and estates of 100k+ items need several per item."""
    bits = rng.getrandbits(128) & _UUID_CLEAR | _UUID_SET
    h = f"{bits:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _microseconds(moment: float) -> int:
    return round(moment * 1_000_000)


def _prune(heap: list[float], now: float) -> None:
    """Drop the end times that have passed from a heap of in-flight replications."""
    while heap and heap[0] <= now:
        heapq.heappop(heap)


def _hex32(rng: random.Random) -> str:
    return f"{rng.getrandbits(128):032x}"


@dataclass(frozen=True, slots=True)
class ItemFilter:
    """The query filters of ``GET /checkpoint_items`` and ``/count``; None means any."""

    status: str | None = None
    name: str | None = None
    resource_id: str | None = None
    resource_name: str | None = None
    resource_type: str | None = None
    checkpoint_id: str | None = None
    policy_id: str | None = None
    az: str | None = None
    start_time: float | None = None
    end_time: float | None = None

    def is_empty(self) -> bool:
        return self == _NO_FILTER

    def matches(self, item: Item) -> bool:  # noqa: PLR0911 - one early exit per filter
        if self.status is not None and item.status != self.status:
            return False
        if self.name is not None and self.name.lower() not in item.name.lower():
            return False
        if self.resource_id is not None and item.resource_id != self.resource_id:
            return False
        # Fuzzy, as the API reference says of both name and resource_name.
        if (
            self.resource_name is not None
            and self.resource_name.lower() not in item.resource_name.lower()
        ):
            return False
        if self.resource_type is not None and item.resource_type != self.resource_type:
            return False
        if self.checkpoint_id is not None and item.checkpoint_id != self.checkpoint_id:
            return False
        if self.policy_id is not None and item.policy_id != self.policy_id:
            return False
        if self.az is not None and item.az != self.az:
            return False
        if self.start_time is None and self.end_time is None:
            return True
        # Compared in whole microseconds: the resolution of the times the API shows.
        created = _microseconds(item.created_at)
        if self.start_time is not None and created < _microseconds(self.start_time):
            return False
        return self.end_time is None or created <= _microseconds(self.end_time)


_NO_FILTER = ItemFilter()


@dataclass(frozen=True, slots=True)
class RecordFilter:
    """The query filters of ``GET /replication_records``."""

    checkpoint_item_id: str | None = None
    destination_region: str | None = None
    destination_project_id: str | None = None
    status: str | None = None

    def matches(self, record: Record, now: float) -> bool:
        if self.checkpoint_item_id is not None and record.item.id != self.checkpoint_item_id:
            return False
        region, project = self.destination_region, self.destination_project_id
        if region is not None and record.destination_region != region:
            return False
        if project is not None and record.destination_project_id != project:
            return False
        return self.status is None or record.status(now) == self.status


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
            Project(_hex32(self._gen), region)
            for region in config.regions
            for _ in range(config.projects_per_region)
        )
        self._projects = {p.id: p for p in self.projects}
        self.destination_projects = self._destination_projects()
        self._policies = {p.id: [_uuid(self._gen) for _ in range(3)] for p in self.projects}
        self._items: dict[str, Item] = {}
        self._by_project: dict[str, list[Item]] = {p.id: [] for p in self.projects}
        self._records: dict[str, Record] = {}
        self._records_by_item: dict[str, list[Record]] = {}
        self._records_by_project: dict[str, list[Record]] = {p.id: [] for p in self.projects}
        self._latest: dict[tuple[str, str], Record] = {}
        self._in_flight: dict[str, list[float]] = {}  # destination region -> heap of end_at
        self._sorted: dict[tuple[str, SortSpec], tuple[list[Item], dict[str, int]]] = {}
        if config.age_days:
            self._generate_aged(config.items, config.age_days)
        else:
            self._generate(config.items)

    @property
    def config(self) -> SimulatorConfig:
        """The knobs this estate was made from."""
        return self._config

    # ---- generation -------------------------------------------------------------------

    def _destination_projects(self) -> dict[str, str]:
        """One destination project per region: the estate's own project where it has one
        (same account), otherwise a generated id."""
        regions = sorted({d for dests in self._config.capabilities.values() for d in dests})
        own = {p.region: p.id for p in reversed(self.projects)}
        return {r: own.get(r) or _hex32(self._gen) for r in regions}

    def _generate(self, count: int) -> None:
        projects = self.projects
        for index in range(count):
            project = projects[index % len(projects)]
            created = BASE_EPOCH + self._gen.uniform(0, _YEAR_S)
            item = self._new_item(self._gen, project, created, self._draw_status())
            self._insert(item)
            self._seed_history(item)

    def _generate_aged(self, count: int, days: int) -> None:
        """Resources with a backup a day (the newest two to three hours old), each
        destination's copies drawn from one of the coverage profiles."""
        now = self._clock.now()
        projects = self.projects
        for index in range(max(1, count // days)):
            project = projects[index % len(projects)]
            kind = "autobk" if self._gen.random() < 0.7 else "manualbk"
            first = self._new_item(self._gen, project, now, "available")
            history: list[Item] = []
            for day in range(days):
                created = now - day * 86400 - self._gen.uniform(7200, 10800)
                item = replace(
                    self._new_item(self._gen, project, created, "available"),
                    resource_id=first.resource_id,
                    resource_name=first.resource_name,
                    name=f"{kind}_{self._gen.getrandbits(16):04x}",
                )
                self._insert(item)
                history.append(item)  # newest first
            for destination in self._config.capabilities[project.region]:
                self._aged_copies(history, destination, now)

    def _aged_copies(self, history: list[Item], destination: str, now: float) -> None:
        draw = self._gen.random()
        newest = history[0]
        older = history[min(len(history) - 1, self._gen.randrange(2, 5))]
        if draw < 0.4:  # covered: last night's backup was copied
            self._add_record(newest, destination, start=newest.protected_at + 600, fails=False)
        elif draw < 0.55:  # stale: a copy days old, nothing since
            self._add_record(older, destination, start=older.protected_at + 600, fails=False)
        elif draw < 0.7:  # failing: an old copy, and last night's failed
            self._add_record(older, destination, start=older.protected_at + 600, fails=False)
            self._add_record(newest, destination, start=newest.protected_at + 600, fails=True)
        elif draw < 0.8:  # running: an old copy, last night's still copying
            self._add_record(older, destination, start=older.protected_at + 600, fails=False)
            span = self._config.copy_wait_s + self._config.copy_duration_s
            self._add_record(
                newest, destination, start=now - self._gen.uniform(0, span), fails=False
            )
        # else missing: never copied

    def _draw_status(self) -> str:
        draw = self._gen.random()
        if draw < 0.82:
            return "available"
        if draw < 0.90:
            return "protecting"
        return "error" if draw < 0.96 else "deleted"

    def _new_item(self, rng: random.Random, project: Project, created: float, status: str) -> Item:
        word = rng.choice(_WORDS)
        finished = status not in _BUSY
        return Item(
            id=_uuid(rng),
            project_id=project.id,
            region=project.region,
            checkpoint_id=_uuid(rng),
            name=f"{'autobk' if rng.random() < 0.7 else 'manualbk'}_{rng.getrandbits(16):04x}",
            description="" if rng.random() < 0.5 else f"backup of {word} server",
            resource_id=_uuid(rng),
            resource_name=f"ecs-{word}-{rng.randrange(10000):04d}",
            status=status,
            created_at=created,
            protected_at=created + rng.uniform(60, 3600) if finished else created,
            size_mb=rng.randrange(10, 500) * 1024,
            az=f"{project.region}{rng.choice('abc')}",
            policy_id=rng.choice(self._policies[project.id]),
            incremental=rng.random() < 0.7,
            tags=(("env", rng.choice(("prod", "test", "dev"))),),
        )

    def _seed_history(self, item: Item) -> None:
        """Some available backups already have a replica, a failed copy, or one under way."""
        if item.status != "available":
            return
        draw = self._gen.random()
        if draw >= 0.15:
            return
        destination = self._gen.choice(self._config.capabilities[item.region])
        if draw < 0.10:
            self._add_record(item, destination, start=item.protected_at + 600, fails=False)
        elif draw < 0.13:
            self._add_record(item, destination, start=item.protected_at + 600, fails=True)
        else:
            span = self._config.copy_wait_s + self._config.copy_duration_s
            start = self._clock.now() - self._gen.uniform(0, span)
            self._add_record(item, destination, start=start, fails=False)

    def _insert(self, item: Item) -> None:
        self._items[item.id] = item
        self._by_project[item.project_id].append(item)

    def _add_record(
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
            id=_uuid(self._ids),
            item=item,
            destination_region=destination,
            destination_project_id=destination_project_id or self.destination_projects[destination],
            destination_checkpoint_id=_uuid(self._ids),
            destination_checkpoint_item_id=_uuid(self._ids),
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
            ordered = sorted(self.items_of(project_id), key=_SORT_ATTRS["id"])
            # Stable sorts from the last key to the first give a multi-key order.
            for key, descending in reversed(sort):
                ordered.sort(key=_SORT_ATTRS[key], reverse=descending)
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
            code = "CSBS.2003" if item.status in _BUSY else "CSBS.4000"
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
        return self._add_record(
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
        items = [self._new_item(self._added, project, created, status) for _ in range(count)]
        for item in items:
            self._insert(item)
        for key in [k for k in self._sorted if k[0] == project_id]:
            del self._sorted[key]
        return items
