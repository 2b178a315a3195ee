"""An item meets the rules: the destinations it gets, the pairs worth sending, the counts."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.discovery.item import (
    ALREADY_REPLICATED,
    IN_PROGRESS,
    is_replica,
    pair_state,
)
from orchestrator.discovery.rules import Destination, DiscoverConfig, Source
from orchestrator.models import ReplicationTask
from orchestrator.service.records import RecordReader

__all__ = ["SourceSummary", "destinations_for", "pairs_of", "task_for"]


@dataclass(slots=True)
class SourceSummary:
    """Counts for one source. Items: listed, not available, replicas, matched by a rule.
    Pairs: written, skipped as already replicated, skipped as in progress."""

    source: Source
    listed: int = 0
    not_available: int = 0
    replicas: int = 0
    matched: int = 0
    pairs: int = 0
    replicated: int = 0
    in_progress: int = 0
    invalid_ids: int = 0
    """Listed items whose id is no UUID: never written (a manifest cell a spreadsheet may run)."""
    superseded: int = 0

    def line(self, done: str = "written") -> str:
        """One line for a person; ``done`` says what became of the pairs ("written")."""
        return (
            f"{self.source}: listed {self.listed}, matched {self.matched}, skipped "
            f"{self.replicated} already replicated / {self.in_progress} in progress"
            + (f" / {self.superseded} older than a newer backup" if self.superseded else "")
            + f", {self.pairs} pairs {done}"
            + (f" ({self.replicas} replicas ignored)" if self.replicas else "")
            + (f" ({self.not_available} not available)" if self.not_available else "")
            + (f" ({self.invalid_ids} with an invalid id skipped)" if self.invalid_ids else "")
        )


def destinations_for(
    item: Mapping[str, Any], source: Source, config: DiscoverConfig
) -> dict[str, Destination]:
    """Region -> destination of every rule matching ``item`` (the first rule naming a region
    wins); never the item's own region."""
    targets: dict[str, Destination] = {}
    for rule in config.rules:
        if rule.matches(source, item):
            for dest in rule.to:
                targets.setdefault(dest.region, dest)
    targets.pop(source.region, None)  # never "replicate" into the item's own region
    return targets


def pairs_of(
    item: Mapping[str, Any],
    source: Source,
    config: DiscoverConfig,
    summary: SourceSummary,
    reader: RecordReader,
) -> Iterable[ReplicationTask]:
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
    item_id = str(item["id"]).lower()
    for region, dest in targets.items():
        state = pair_state(item, region, reader)
        if state == ALREADY_REPLICATED:
            summary.replicated += 1
        elif state == IN_PROGRESS:
            summary.in_progress += 1
        else:
            yield task_for(item_id, source, dest, config)


def task_for(
    item_id: str, source: Source, dest: Destination, config: DiscoverConfig
) -> ReplicationTask:
    """The pair of ``item_id`` to ``dest``; for CBR with the destination vault."""
    cbr = config.service == "cbr"
    return ReplicationTask(
        checkpoint_item_id=item_id,
        project_id=source.project_id,
        destination_region=dest.region,
        destination_project_id=dest.project_id,
        source_region=source.region,
        destination_vault_id=(dest.vault_id or config.vaults.get(dest.region)) if cbr else None,
    )
