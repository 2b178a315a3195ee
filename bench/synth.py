"""Big synthetic inputs for the scale benchmark: a manifest of N rows and the ledger of a
finished run over it, written streaming (never held in memory), deterministic per seed.

Rows look like tests/manifests.py's (UUID items, one source project, a few destination
regions and projects); the ledger has what a real finished run leaves: ``run_started``,
then an ``attempt`` and a ``result`` per pair, then ``run_finished``.
"""

from __future__ import annotations

import csv
import os
import random
from collections.abc import Iterator
from pathlib import Path

import orjson

from orchestrator.ledger.history import History

__all__ = ["Row", "rows", "snapshot_all_but", "write_finished_ledger", "write_manifest"]

REGIONS = ("cn-north-1", "cn-east-2", "cn-south-1", "cn-east-3")
SOURCE_PROJECT = "0" * 24 + "5ca1ab1e"
COLUMNS = ("checkpoint_item_id", "project_id", "destination_region", "destination_project_id")
_TS = "2025-01-31T23:59:59.123456+00:00"
_NEWLINE = orjson.OPT_APPEND_NEWLINE
_LONGEST_LINE = 1 << 20  # far longer than any line this module writes

Row = tuple[str, str, str, str]


def _uuid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"


def rows(n: int, seed: int = 7) -> Iterator[Row]:
    """``n`` distinct pairs (item, project, destination region, destination project)."""
    rng = random.Random(seed)
    destinations = [f"{rng.getrandbits(128):032x}" for _ in REGIONS]
    for i in range(n):
        k = i % len(REGIONS)
        yield _uuid(rng), SOURCE_PROJECT, REGIONS[k], destinations[k]


def write_manifest(path: Path, n: int, seed: int = 7) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(rows(n, seed))
    return path


def write_finished_ledger(path: Path, manifest: Path, pairs: int, seed: int = 7) -> int:
    """The ledger of a run that replicated every one of ``pairs`` rows; returns its lines."""
    rng = random.Random(seed + 1)
    run_id = f"{rng.getrandbits(128):032x}"
    common = {"v": 1, "ts": _TS, "run_id": run_id}
    lines = 0
    with open(path, "wb") as out:

        def put(event: str, **fields: object) -> None:
            nonlocal lines
            out.write(orjson.dumps({**common, "event": event, **fields}, option=_NEWLINE))
            lines += 1

        put("run_started", manifest=str(manifest.resolve()), source="manifest", settings={})
        for line, (item, project, region, dest) in enumerate(rows(pairs, seed), start=2):
            ids = {
                "project_id": project,
                "checkpoint_item_id": item,
                "destination_region": region,
                "destination_project_id": dest,
            }
            put("attempt", **ids, attempt=1)
            put(
                "result",
                **ids,
                source_region="cn-north-4",
                status="replicated",
                replication_record_id=_uuid(rng),
                http_status=200,
                error_code=None,
                error_msg=None,
                attempts=1,
                started_at=_TS,
                finished_at=_TS,
                duration_s=0.05,
                manifest_line=line,
            )
        put("run_finished", counts={"replicated": pairs}, reason=None, exit_code=0)
    return lines


def snapshot_all_but(ledger: Path, tail_bytes: int) -> int:
    """Save the ledger's snapshot as a running job would have before its last ``tail_bytes``
    were written (the most a run killed just before its next snapshot leaves unsaved);
    returns the bytes the snapshot covers (0: the ledger is shorter, nothing saved).

    The ledger is cut at a line boundary, folded and snapshotted, then given its tail
    back: the same file, so the snapshot describes it as the job's would."""
    size = ledger.stat().st_size
    if size <= tail_bytes:
        return 0
    # Only the tail (and the line it starts in) is read, not the whole 476 MB ledger.
    start = max(0, size - tail_bytes - _LONGEST_LINE)
    with open(ledger, "rb") as f:
        f.seek(start)
        block = f.read()
    cut = start + block.rindex(b"\n", 0, size - tail_bytes - start) + 1
    os.truncate(ledger, cut)
    History.load(ledger, record_ids=False).save_snapshot(ledger)
    with open(ledger, "ab") as out:
        out.write(block[cut - start :])
    return cut
