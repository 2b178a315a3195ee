"""The copies a ledger is waiting for, and what the service says of one.

A pair is pending when its latest result is a success carrying a replication record id and
no ``copy_status`` line about that record is final. Its status comes from ``GET
/replication_records`` filtered by item and destination region (the record with the ledger's
id); when that endpoint answers 404 (it is unconfirmed on the real service), from the item's
embedded ``replication_records``. A record the service does not know (or an item that is
gone) is *missing* (None).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from orchestrator.errors import PermanentApiError
from orchestrator.ledger.file import iter_records
from orchestrator.ledger.format import LedgerEvent, pair_ids
from orchestrator.ledger.history import History
from orchestrator.models import FINAL_SUCCESS
from orchestrator.service.protocol import ReplicationService
from orchestrator.service.records import CopyState, RecordReader, find_record

__all__ = ["Answer", "PendingCopy", "Seen", "pending_copies", "poll_copy"]

_SUCCESS_STATUSES: Final = frozenset(str(s) for s in FINAL_SUCCESS)


@dataclass(frozen=True, slots=True)
class PendingCopy:
    """A pair whose replicate request succeeded and whose copy has not ended (as far as the
    ledger knows). ``last_status``: the latest copy status known for it: the ledger's, then
    what this run's polls saw (a status outside the contract's list included)."""

    project_id: str
    checkpoint_item_id: str
    destination_region: str
    destination_project_id: str | None
    source_region: str | None
    replication_record_id: str
    last_status: str | None = None
    #: A CBR pair (its ledger lines say ``backup_id``): the destination vault, else None.
    destination_vault_id: str | None = None

    def ids(self) -> dict[str, str | None]:
        if self.destination_vault_id is not None:
            return {
                "project_id": self.project_id,
                "backup_id": self.checkpoint_item_id,
                "source_region": self.source_region,
                "destination_region": self.destination_region,
                "destination_project_id": self.destination_project_id,
                "destination_vault_id": self.destination_vault_id,
            }
        return {
            "project_id": self.project_id,
            "checkpoint_item_id": self.checkpoint_item_id,
            "source_region": self.source_region,
            "destination_region": self.destination_region,
            "destination_project_id": self.destination_project_id,
        }


# -- what to track ---------------------------------------------------------------------------


def pending_copies(path: str | os.PathLike[str]) -> list[PendingCopy]:
    """The pairs of the ledger at ``path`` whose copy has not been seen to end.

    The latest result of the pair must be a success carrying a replication record id, and no
    ``copy_status`` line about that record may be final. Two passes: the history fold decides,
    a second read collects the ids of the few pairs still open.
    """
    history = History.load(path)
    reader = RecordReader()
    found: dict[tuple[str, str, str], PendingCopy] = {}
    for record in iter_records(path):
        pending = _pending_of(record, history, reader)
        if pending is not None:
            found[pending.project_id, pending.checkpoint_item_id, pending.destination_region] = (
                pending
            )
    return list(found.values())


def _pending_of(
    record: Mapping[str, Any], history: History, reader: RecordReader
) -> PendingCopy | None:
    if record.get("event") != LedgerEvent.RESULT or record.get("status") not in _SUCCESS_STATUSES:
        return None
    record_id = record.get("replication_record_id")
    key = pair_ids(record)
    if key is None or not all(key) or not (isinstance(record_id, str) and record_id):
        return None
    if history.record_id(key) != record_id:
        return None  # a later result replaced this one
    last = history.copy_status(key)
    state = reader.state(last)
    if state is not None and state.final:
        return None
    return PendingCopy(
        project_id=key[0],
        checkpoint_item_id=key[1],
        destination_region=key[2],
        destination_project_id=_text(record.get("destination_project_id")),
        source_region=_text(record.get("source_region")),
        replication_record_id=str(record_id),
        last_status=last,
        destination_vault_id=_text(record.get("destination_vault_id")),
    )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


# -- asking the service ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    """What the service said of one copy: its own word, what it means, the progress."""

    word: str
    state: CopyState
    progress: int | None


Seen = Answer | None  # None: the service does not know the record


async def poll_copy(client: ReplicationService, pair: PendingCopy) -> Seen:
    """The copy status and progress of ``pair``'s replication record, or None if unknown."""
    try:
        try:
            records = await client.replication_records(
                pair.project_id,
                region=pair.source_region,
                source_item_id=pair.checkpoint_item_id,
                destination_region=pair.destination_region,
            )
        except PermanentApiError as exc:
            if exc.http_status != 404:
                raise
            item = await client.get_item(
                pair.project_id, pair.checkpoint_item_id, region=pair.source_region
            )
            embedded = item.get("replication_records")
            records = embedded if isinstance(embedded, list) else []
    except PermanentApiError as exc:
        if exc.http_status == 404:
            return None  # the item is gone
        raise
    return _status_in(records, pair.replication_record_id, client.records)


def _status_in(records: Iterable[Any], record_id: str, reader: RecordReader) -> Seen:
    record = find_record(records, record_id)
    if record is None:
        return None
    raw = record.get("status")
    # The service's word, kept as it said it (bounded: it goes into the ledger).
    word = raw.strip().lower()[:40] if isinstance(raw, str) else ""
    state = reader.record_state(record)
    extra = record.get("extra_info")
    progress = extra.get("progress") if isinstance(extra, Mapping) else None
    if isinstance(progress, bool) or not isinstance(progress, int):
        progress = 100 if state is CopyState.SUCCESS else None
    return Answer(word, state, progress)
