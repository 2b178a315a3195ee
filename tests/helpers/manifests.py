"""Make manifests for tests and benchmarks: deterministic rows, written as CSV or JSON Lines.

Streamed both ways, so a million-row manifest never sits in memory::

    write_manifest(path, make_rows(1_000_000, seed=7), "csv")
"""

from __future__ import annotations

import csv
import os
import random
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Literal

import orjson

__all__ = ["DEFAULT_REGIONS", "SOURCE_PROJECT", "make_rows", "write_manifest"]

DEFAULT_REGIONS = ("cn-north-1", "cn-east-2", "cn-south-1")
SOURCE_PROJECT = "0" * 24 + "5ca1ab1e"
_RECENT = 64  # duplicates and conflicts repeat one of the last rows


def _hex_id(rng: random.Random) -> str:
    return f"{rng.getrandbits(128):032x}"


def make_rows(
    n: int,
    seed: int = 0,
    *,
    regions: Sequence[str] = DEFAULT_REGIONS,
    project_id: str | None = SOURCE_PROJECT,
    destination_projects: int = 4,
    duplicate_rate: float = 0.0,
    conflict_rate: float = 0.0,
    invalid_rate: float = 0.0,
    names: bool = False,
) -> Iterator[dict[str, str]]:
    """``n`` manifest rows as dicts of strings, the same for the same arguments.

    ``project_id=None`` leaves the column out (the run's default applies). A duplicate
    repeats a recent row exactly; a conflict repeats a recent row's pair with another
    destination project; an invalid row has a checkpoint item id that is not a UUID.
    """
    rng = random.Random(seed)
    dest_projects = [_hex_id(rng) for _ in range(max(2, destination_projects))]
    recent: list[dict[str, str]] = []
    for i in range(n):
        roll = rng.random()
        if recent and roll < duplicate_rate:
            row = dict(rng.choice(recent))
        elif recent and roll < duplicate_rate + conflict_rate:
            row = dict(rng.choice(recent))
            others = [p for p in dest_projects if p != row["destination_project_id"]]
            row["destination_project_id"] = rng.choice(others)
        else:
            row = {
                "checkpoint_item_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "destination_region": rng.choice(regions),
                "destination_project_id": rng.choice(dest_projects),
            }
            if project_id is not None:
                row["project_id"] = project_id
            if names:
                row["name"] = f"replica {i}"
            if roll < duplicate_rate + conflict_rate + invalid_rate:
                row["checkpoint_item_id"] = f"not-a-uuid-{i}"
            else:
                recent.append(row)
                if len(recent) > _RECENT:
                    recent.pop(0)
        yield row


def write_manifest(
    path: str | os.PathLike[str],
    rows: Iterable[Mapping[str, object]],
    fmt: Literal["csv", "jsonl"] = "csv",
    *,
    columns: Sequence[str] | None = None,
) -> int:
    """Write ``rows`` to ``path`` and return how many were written.

    CSV columns are ``columns`` or else the first row's keys; a row without a column gets
    an empty cell. JSON Lines writes each row as it is.
    """
    count = 0
    if fmt == "jsonl":
        with open(path, "wb") as f:
            for row in rows:
                f.write(orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE))
                count += 1
        return count
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        header: Sequence[str] | None = columns
        if header is not None:
            writer.writerow(header)
        for row in rows:
            if header is None:
                header = list(row)
                writer.writerow(header)
            writer.writerow(["" if row.get(c) is None else row.get(c) for c in header])
            count += 1
        if header is None:
            writer.writerow(["checkpoint_item_id", "destination_region", "destination_project_id"])
    return count
