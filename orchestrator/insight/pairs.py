"""``report --pairs FILE.csv``: one row per pair with its final state, as S3 Batch Operations
writes a completion report, for auditors and spreadsheets.

Two streaming passes over the ledger, so that memory grows with the number of pairs (a
17-byte key and two small values each), never with the ledger's lines, and no row is held:

1. for each pair of the selected runs, the number of its latest ``attempt``/``result`` line
   and its latest ``copy_status`` (wherever it is: a copy ends long after its run);
2. the ledger again: each pair's latest line is written as its row when it is met.

Pairs are keyed as every fold of the ledger keys them (:class:`PairKeys`), and a rejected
manifest row counts per manifest line (by the manifest's file name), as ``report`` counts it.
A pair whose latest line is an ``attempt`` is ``unknown`` (the request may have been applied).
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Final

from orchestrator.atomic_file import replacing
from orchestrator.errors import ConfigError
from orchestrator.ledger.format import PAIR_EVENTS, LedgerEvent, PairKeys
from orchestrator.safe_text import csv_row

__all__ = ["PAIRS_HEADER", "write_pairs"]

PAIRS_HEADER: Final = (
    "project_id",
    "checkpoint_item_id",
    "source_region",
    "destination_region",
    "destination_project_id",
    "status",
    "replication_record_id",
    "http_status",
    "error_code",
    "error_msg",
    "attempts",
    "copy_status",
    "run_id",
    "ts",
    "manifest_line",
    # CBR ledgers: the backup and the vault it was copied into (empty for CSBS pairs).
    "backup_id",
    "destination_vault_id",
)
_PAIR_EVENTS: Final = PAIR_EVENTS

Records = Callable[[], Iterable[Mapping[str, Any]]]


def _selected_runs(records: Iterable[Mapping[str, Any]], run: str) -> Callable[[str], bool]:
    """Which run ids count: the last run's, every one, or the one named."""
    if run == "all":
        return lambda _run_id: True
    if run != "last":
        return lambda run_id: run_id == run
    last: str | None = None
    for record in records:
        if record.get("event") == LedgerEvent.RUN_STARTED or (
            last is None and record.get("event") in _PAIR_EVENTS
        ):
            last = str(record.get("run_id"))
    return lambda run_id: run_id == last


def _index(
    records: Iterable[Mapping[str, Any]], selected: Callable[[str], bool], keys: PairKeys
) -> tuple[dict[bytes, int], dict[bytes, str]]:
    latest: dict[bytes, int] = {}
    copies: dict[bytes, str] = {}
    for number, record in enumerate(records):
        event = record.get("event")
        if event in _PAIR_EVENTS and selected(str(record.get("run_id"))):
            key = keys.counted(record)
            if key is not None:
                latest[key] = number
        elif event == LedgerEvent.COPY_STATUS and record.get("copy_status") is not None:
            key = keys.of(record)
            if key is not None:
                copies[key] = str(record["copy_status"])
    return latest, copies


def _rows(
    records: Iterable[Mapping[str, Any]],
    latest: Mapping[bytes, int],
    copies: Mapping[bytes, str],
    keys: PairKeys,
) -> Iterator[list[Any]]:
    for number, record in enumerate(records):
        if record.get("event") not in _PAIR_EVENTS:
            continue
        key = keys.counted(record)
        if key is None or latest.get(key) != number:
            continue
        row = {name: record.get(name) for name in PAIRS_HEADER}
        if record.get("event") == LedgerEvent.ATTEMPT:
            row["status"] = "unknown"
        row["copy_status"] = copies.get(key)
        # Ids and messages come from the service or a manifest: no formulas for a spreadsheet.
        yield csv_row("" if row[name] is None else row[name] for name in PAIRS_HEADER)


def write_pairs(records: Records, path: str | os.PathLike[str], *, run: str = "last") -> int:
    """Write one CSV row per pair of the selected runs to ``path`` (replaced when complete);
    returns the number of rows. ``records()`` streams the ledger, and is called three times
    at most."""
    selected = _selected_runs(records(), run)
    keys = PairKeys()  # one numbering for both passes
    latest, copies = _index(records(), selected, keys)
    if run not in ("last", "all") and not latest:
        raise ConfigError(f"run {run!r} has no pairs in the ledger")
    count = 0
    try:
        # Replaced whole when complete, private to its owner (0600) like every file we write.
        with replacing(Path(path)) as raw:
            handle = io.TextIOWrapper(raw, encoding="utf-8", newline="")
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(PAIRS_HEADER)
            for row in _rows(records(), latest, copies, keys):
                writer.writerow(row)
                count += 1
            handle.flush()
            handle.detach()  # the file stays open for replacing() to fsync and rename
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write the pairs report: {exc.strerror or exc}") from exc
    return count
