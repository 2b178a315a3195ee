"""``select = "newest"``: per resource and region, only the newest backup lacking a copy."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.discovery.item import (
    ALREADY_REPLICATED,
    created_of,
    is_replica,
    pair_state,
    text_of,
)
from orchestrator.discovery.pairs import SourceSummary, destinations_for, task_for
from orchestrator.discovery.rules import DiscoverConfig, Source
from orchestrator.models import ReplicationTask
from orchestrator.service.records import RecordReader

__all__ = ["Newest"]


@dataclass(slots=True)
class _Best:
    """One (resource, destination region) under ``select = "newest"``."""

    source: Source
    task: ReplicationTask | None = None
    newest: float = float("-inf")  # creation time of the newest sendable backup
    held: float = float("-inf")  # of the newest backup copied, or being copied, there
    candidates: int = 0


class Newest:
    """Keeps, per resource and region, only the newest available backup and the newest one
    the region holds (or is receiving); memory grows with resources, not backups."""

    def __init__(self) -> None:
        self._best: dict[tuple[str, str, str], _Best] = {}

    def add(
        self,
        item: Mapping[str, Any],
        source: Source,
        config: DiscoverConfig,
        summary: SourceSummary,
        reader: RecordReader,
    ) -> None:
        if item.get("status") != "available":
            summary.not_available += 1
            return
        if not config.include_replicas and is_replica(item):
            summary.replicas += 1
            return
        targets = destinations_for(item, source, config)
        if not targets:
            return
        summary.matched += 1
        created = created_of(item)
        item_id = str(item["id"]).lower()
        resource = text_of(item.get("resource_id")) or item_id
        for region, dest in targets.items():
            key = (source.project_id, resource, region)
            best = self._best.get(key)
            if best is None:
                best = self._best[key] = _Best(source)
            state = pair_state(item, region, reader)
            if state is not None:
                best.held = max(best.held, created)
                if state == ALREADY_REPLICATED:
                    summary.replicated += 1
                else:
                    summary.in_progress += 1
                continue
            best.candidates += 1
            if best.task is None or created > best.newest:
                best.newest = created
                best.task = task_for(item_id, source, dest, config)

    def tasks(self, summaries: Mapping[Source, SourceSummary]) -> list[ReplicationTask]:
        """The pairs worth sending, the largest lag removed first: a resource with no copy
        there at all, then by how much newer the backup is than the copy held."""
        chosen: list[tuple[tuple[bool, float], ReplicationTask]] = []
        for best in self._best.values():
            summary = summaries[best.source]
            if best.task is None:
                continue
            if best.newest <= best.held:
                summary.superseded += best.candidates
                continue
            summary.superseded += best.candidates - 1
            summary.pairs += 1
            chosen.append(((best.held == float("-inf"), best.newest - best.held), best.task))
        chosen.sort(key=lambda pair: pair[0], reverse=True)
        return [task for _, task in chosen]
