"""Manifests drawn from a simulated estate: what a demo, a test or a benchmark replicates.

``python -m orchestrator simulate --write-manifest FILE`` writes one for the estate the same
flags would serve, so a user can try ``run`` against ``simulate`` without inventing ids.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator

from orchestrator.simulator.cbr_views import vault_id
from orchestrator.simulator.state import Estate

__all__ = [
    "CBR_MANIFEST_COLUMNS",
    "MANIFEST_COLUMNS",
    "cbr_rows",
    "estate_rows",
    "write_estate_manifest",
]

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


CBR_MANIFEST_COLUMNS = (
    "backup_id",
    "project_id",
    "source_region",
    "destination_region",
    "destination_project_id",
    "destination_vault_id",
)


def cbr_rows(
    estate: Estate, *, limit: int | None = None, destinations: int = 1
) -> Iterator[dict[str, str]]:
    """:func:`estate_rows` as a CBR manifest: backups, and the destination project's vault of
    each destination region."""
    for row in estate_rows(estate, limit=limit, destinations=destinations):
        region, project = row["destination_region"], row["destination_project_id"]
        yield {
            "backup_id": row["checkpoint_item_id"],
            "project_id": row["project_id"],
            "source_region": row["source_region"],
            "destination_region": region,
            "destination_project_id": project,
            "destination_vault_id": vault_id(project, region),
        }


def write_estate_manifest(
    estate: Estate,
    path: str | os.PathLike[str],
    *,
    limit: int | None = None,
    destinations: int = 1,
    service: str = "csbs",
) -> int:
    """Write :func:`estate_rows` (``service="cbr"``: :func:`cbr_rows`) as a CSV manifest;
    returns the number of rows."""
    count = 0
    cbr = service == "cbr"
    columns = CBR_MANIFEST_COLUMNS if cbr else MANIFEST_COLUMNS
    rows = (cbr_rows if cbr else estate_rows)(estate, limit=limit, destinations=destinations)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, columns, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
            count += 1
    return count
