"""Manifests drawn from a simulated estate: what a demo, a test or a benchmark replicates.

``python -m orchestrator simulate --write-manifest FILE`` writes one for the estate the same
flags would serve, so a user can try ``run`` against ``simulate`` without inventing ids.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator

from orchestrator.simulator.state import Estate

__all__ = ["MANIFEST_COLUMNS", "estate_rows", "write_estate_manifest"]

MANIFEST_COLUMNS = (
    "checkpoint_item_id",
    "project_id",
    "source_region",
    "destination_region",
    "destination_project_id",
)


def estate_rows(
    estate: Estate, *, limit: int | None = None, destinations: int = 1
) -> Iterator[dict[str, str]]:
    """A row per ``available`` item and each of its first ``destinations`` capable regions."""
    capabilities = estate.capabilities()
    written = 0
    for project in estate.projects:
        for item in estate.items_of(project.id):
            if item.status != "available":
                continue
            for region in capabilities[project.region][:destinations]:
                if limit is not None and written >= limit:
                    return
                written += 1
                yield {
                    "checkpoint_item_id": item.id,
                    "project_id": project.id,
                    "source_region": project.region,
                    "destination_region": region,
                    "destination_project_id": estate.destination_projects[region],
                }


def write_estate_manifest(
    estate: Estate,
    path: str | os.PathLike[str],
    *,
    limit: int | None = None,
    destinations: int = 1,
) -> int:
    """Write :func:`estate_rows` as a CSV manifest; returns the number of rows."""
    count = 0
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, MANIFEST_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in estate_rows(estate, limit=limit, destinations=destinations):
            writer.writerow(row)
            count += 1
    return count
