"""How an estate is made up from its seed: backups spread over a year (or, with ``age_days``, a
backup a day per resource, each destination's copies drawn from coverage profiles), some of
them with a replica, a failed copy or one under way. Every draw comes from a seeded stream, so
one seed gives one estate."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Protocol

from orchestrator.simulator.clock import Clock
from orchestrator.simulator.config import SimulatorConfig
from orchestrator.simulator.records import BUSY, Item, Project, Record

__all__ = ["BASE_EPOCH", "EstateSink", "Seeder", "hex32", "new_item", "uuid4"]

#: Generated backups are spread over the year after this instant (2024-01-01T00:00:00Z).
BASE_EPOCH = 1_704_067_200.0
_YEAR_S = 365 * 86400.0
_WORDS = ("web", "db", "cache", "api", "batch", "mq", "auth", "etl", "front", "search")
# The version (4) and variant (RFC 4122) bits of a random UUID.
_UUID_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID_SET = (0x4000 << 64) | (0x8000 << 48)


class EstateSink(Protocol):
    """Where the seeder puts what it makes (the estate)."""

    def insert(self, item: Item) -> None: ...

    def add_record(self, item: Item, destination: str, *, start: float, fails: bool) -> Record: ...


class Seeder:
    """Generates an estate's items and their past copies into ``sink``, drawing from ``gen``."""

    def __init__(
        self,
        sink: EstateSink,
        config: SimulatorConfig,
        clock: Clock,
        gen: random.Random,
        *,
        projects: Sequence[Project],
        policies: Mapping[str, Sequence[str]],
    ) -> None:
        self._sink = sink
        self._config = config
        self._clock = clock
        self._gen = gen
        self._projects = projects
        self._policies = policies

    def generate(self, count: int) -> None:
        """``count`` backups spread over the year after :data:`BASE_EPOCH`."""
        projects = self._projects
        for index in range(count):
            project = projects[index % len(projects)]
            created = BASE_EPOCH + self._gen.uniform(0, _YEAR_S)
            item = self._new_item(project, created, self._draw_status())
            self._sink.insert(item)
            self._seed_history(item)

    def generate_aged(self, count: int, days: int) -> None:
        """Resources with a backup a day (the newest two to three hours old), each
        destination's copies drawn from one of the coverage profiles."""
        now = self._clock.now()
        projects = self._projects
        for index in range(max(1, count // days)):
            project = projects[index % len(projects)]
            kind = "autobk" if self._gen.random() < 0.7 else "manualbk"
            first = self._new_item(project, now, "available")
            history: list[Item] = []
            for day in range(days):
                created = now - day * 86400 - self._gen.uniform(7200, 10800)
                item = replace(
                    self._new_item(project, created, "available"),
                    resource_id=first.resource_id,
                    resource_name=first.resource_name,
                    name=f"{kind}_{self._gen.getrandbits(16):04x}",
                )
                self._sink.insert(item)
                history.append(item)  # newest first
            for destination in self._config.capabilities[project.region]:
                self._aged_copies(history, destination, now)

    def _aged_copies(self, history: list[Item], destination: str, now: float) -> None:
        draw = self._gen.random()
        newest = history[0]
        older = history[min(len(history) - 1, self._gen.randrange(2, 5))]
        if draw < 0.4:  # covered: last night's backup was copied
            self._sink.add_record(newest, destination, start=newest.protected_at + 600, fails=False)
        elif draw < 0.55:  # stale: a copy days old, nothing since
            self._sink.add_record(older, destination, start=older.protected_at + 600, fails=False)
        elif draw < 0.7:  # failing: an old copy, and last night's failed
            self._sink.add_record(older, destination, start=older.protected_at + 600, fails=False)
            self._sink.add_record(newest, destination, start=newest.protected_at + 600, fails=True)
        elif draw < 0.8:  # running: an old copy, last night's still copying
            self._sink.add_record(older, destination, start=older.protected_at + 600, fails=False)
            span = self._config.copy_wait_s + self._config.copy_duration_s
            self._sink.add_record(
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

    def _seed_history(self, item: Item) -> None:
        """Some available backups already have a replica, a failed copy, or one under way."""
        if item.status != "available":
            return
        draw = self._gen.random()
        if draw >= 0.15:
            return
        destination = self._gen.choice(self._config.capabilities[item.region])
        if draw < 0.10:
            self._sink.add_record(item, destination, start=item.protected_at + 600, fails=False)
        elif draw < 0.13:
            self._sink.add_record(item, destination, start=item.protected_at + 600, fails=True)
        else:
            span = self._config.copy_wait_s + self._config.copy_duration_s
            start = self._clock.now() - self._gen.uniform(0, span)
            self._sink.add_record(item, destination, start=start, fails=False)

    def _new_item(self, project: Project, created: float, status: str) -> Item:
        return new_item(self._gen, project, created, status, self._policies[project.id])


def uuid4(rng: random.Random) -> str:
    """A random (version 4) UUID from ``rng``; formatted by hand, as uuid.UUID costs 4x more
    and estates of 100k+ items need several per item."""
    bits = rng.getrandbits(128) & _UUID_CLEAR | _UUID_SET
    h = f"{bits:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def hex32(rng: random.Random) -> str:
    return f"{rng.getrandbits(128):032x}"


def new_item(
    rng: random.Random, project: Project, created: float, status: str, policies: Sequence[str]
) -> Item:
    """A backup of a made-up server in ``project``, drawn from ``rng``."""
    word = rng.choice(_WORDS)
    finished = status not in BUSY
    return Item(
        id=uuid4(rng),
        project_id=project.id,
        region=project.region,
        checkpoint_id=uuid4(rng),
        name=f"{'autobk' if rng.random() < 0.7 else 'manualbk'}_{rng.getrandbits(16):04x}",
        description="" if rng.random() < 0.5 else f"backup of {word} server",
        resource_id=uuid4(rng),
        resource_name=f"ecs-{word}-{rng.randrange(10000):04d}",
        status=status,
        created_at=created,
        protected_at=created + rng.uniform(60, 3600) if finished else created,
        size_mb=rng.randrange(10, 500) * 1024,
        az=f"{project.region}{rng.choice('abc')}",
        policy_id=rng.choice(policies),
        incremental=rng.random() < 0.7,
        tags=(("env", rng.choice(("prod", "test", "dev"))),),
    )
