"""The manifest discovery writes: the same CSV columns a hand-written manifest has."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Final

from orchestrator.atomic_file import replacing
from orchestrator.errors import ConfigError
from orchestrator.models import ReplicationTask
from orchestrator.safe_text import csv_row

__all__ = ["CBR_MANIFEST_COLUMNS", "MANIFEST_COLUMNS", "write_manifest"]

#: The columns of a discovered manifest: the same as configs/example-manifest.csv.
MANIFEST_COLUMNS: Final = (
    "checkpoint_item_id",
    "project_id",
    "source_region",
    "destination_region",
    "destination_project_id",
)
#: The columns of a discovered CBR manifest (see orchestrator/engine/cbr_manifest.py).
CBR_MANIFEST_COLUMNS: Final = (
    "backup_id",
    "project_id",
    "source_region",
    "destination_region",
    "destination_project_id",
    "destination_vault_id",
)


def write_manifest(
    tasks: Iterable[ReplicationTask], path: str | os.PathLike[str], *, service: str = "csbs"
) -> int:
    """Write the pairs as a CSV manifest (replaced atomically); returns the rows written.
    ``service="cbr"``: a CBR manifest (backups and destination vaults)."""
    if service == "cbr":
        return _write_rows(
            path,
            CBR_MANIFEST_COLUMNS,
            (
                (
                    t.checkpoint_item_id,
                    t.project_id,
                    t.source_region or "",
                    t.destination_region,
                    t.destination_project_id,
                    t.destination_vault_id or "",
                )
                for t in tasks
            ),
        )
    return _write_rows(
        path,
        MANIFEST_COLUMNS,
        (
            (
                t.checkpoint_item_id,
                t.project_id,
                t.source_region or "",
                t.destination_region,
                t.destination_project_id,
            )
            for t in tasks
        ),
    )


def _write_rows(
    path: str | os.PathLike[str], columns: Sequence[str], rows: Iterable[Sequence[str]]
) -> int:
    target = Path(path)
    count = 0
    try:
        with replacing(target) as raw:
            handle = io.TextIOWrapper(raw, encoding="utf-8", newline="")
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(columns)
            for row in rows:
                writer.writerow(csv_row(row))
                count += 1
            handle.flush()
            handle.detach()  # the file stays open for replacing() to fsync and rename
    except OSError as exc:
        raise ConfigError(f"{target}: cannot write the manifest: {exc.strerror}") from None
    return count
