"""The one reader of the service's copy vocabularies: what a replication's word *means*.

CSBS speaks of a copy in two fields with two vocabularies (see ``docs/service-fidelity.md``):

==================================  =====================================================
field                               words
==================================  =====================================================
a replication record's ``status``   ``waiting_replicate``, ``replicating``, ``success``,
                                    ``fail``, ``skip`` (huaweicloud-sdk-java's CSBS v1
                                    ``ReplicationRecord``; ``ReplicationRecordGet`` in the
                                    Go, Node.js, PHP and .NET SDKs)
an item's ``extend_info.copy_status``  ``na``, ``waiting_copy``, ``copying``, ``success``,
                                    ``fail``
==================================  =====================================================

The words are :class:`~orchestrator.models.CopyWord`; CBR v3's own (:data:`CBR_WORDS`) are
read in CSBS's. Both vocabularies fold into one :class:`CopyState`. ``skip`` and ``fail`` are
final; an unknown word is logged once per process-wide reader (per word) and read as
*running*: it may still end, and ``track`` has a finite deadline, so nothing waits for it
forever.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from typing import Any, Final

import structlog

from orchestrator.models import CopyWord

__all__ = [
    "CBR_WORDS",
    "ITEM_WORDS",
    "RECORD_WORDS",
    "CopyState",
    "RecordReader",
    "cbr_word",
    "find_record",
    "ledger_line_state",
    "live_record_id",
]

log = structlog.get_logger("orchestrator.records")


class CopyState(enum.StrEnum):
    """A copy's state, whichever field and vocabulary said it."""

    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    SKIPPED = "skipped"

    @property
    def final(self) -> bool:
        return self is not CopyState.RUNNING

    @property
    def live(self) -> bool:
        """A replica exists or is being made: the service refuses another to that region."""
        return self in (CopyState.RUNNING, CopyState.SUCCESS)


#: A replication record's ``status``.
RECORD_WORDS: Final[Mapping[str, CopyState]] = {
    CopyWord.WAITING_REPLICATE: CopyState.RUNNING,
    CopyWord.REPLICATING: CopyState.RUNNING,
    CopyWord.SUCCESS: CopyState.SUCCESS,
    CopyWord.FAIL: CopyState.FAILED,
    CopyWord.SKIP: CopyState.SKIPPED,
}
#: An item's ``extend_info.copy_status`` (``na``: no copy; read as None, not a state).
ITEM_WORDS: Final[Mapping[str, CopyState]] = {
    CopyWord.WAITING_COPY: CopyState.RUNNING,
    CopyWord.COPYING: CopyState.RUNNING,
    CopyWord.SUCCESS: CopyState.SUCCESS,
    CopyWord.FAIL: CopyState.FAILED,
}
# Words older versions of this tool (and its simulator) wrote, or that other clouds use.
_ALIASES: Final[Mapping[str, CopyState]] = {
    "failed": CopyState.FAILED,
    "error": CopyState.FAILED,
    "succeeded": CopyState.SUCCESS,
    "skipped": CopyState.SKIPPED,
    "running": CopyState.RUNNING,
}
_WORDS: Final[Mapping[str, CopyState]] = {**_ALIASES, **ITEM_WORDS, **RECORD_WORDS}
#: CBR v3's words for a copy (its operation logs and replication records), in CSBS's: a CBR
#: run's client answers in the words every reader of records knows.
CBR_WORDS: Final[Mapping[str, CopyWord]] = {
    "waiting": CopyWord.WAITING_COPY,
    CopyWord.WAITING_REPLICATE: CopyWord.WAITING_COPY,
    CopyWord.WAITING_COPY: CopyWord.WAITING_COPY,
    "running": CopyWord.COPYING,
    CopyWord.REPLICATING: CopyWord.COPYING,
    CopyWord.COPYING: CopyWord.COPYING,
    CopyWord.SUCCESS: CopyWord.SUCCESS,
    "succeeded": CopyWord.SUCCESS,
    "failed": CopyWord.FAIL,
    CopyWord.FAIL: CopyWord.FAIL,
    "fail_replicate": CopyWord.FAIL,
    "timeout": CopyWord.FAIL,
    "error": CopyWord.FAIL,
    "skipped": CopyWord.SKIP,
    CopyWord.SKIP: CopyWord.SKIP,
}
_NO_COPY: Final = frozenset({"", CopyWord.NA})


class RecordReader:
    """Normalises copy words; says once per unknown word that it met one.

    One per command (no globals): the set of words already reported lives here.
    """

    __slots__ = ("_reported",)

    def __init__(self) -> None:
        self._reported: set[str] = set()

    def state(self, word: object) -> CopyState | None:
        """The state a ``status``/``copy_status`` word means; None for ``na`` or no word."""
        text = word.lower().strip() if isinstance(word, str) else ""
        if text in _NO_COPY:
            return None
        state = _WORDS.get(text)
        if state is None:
            if text not in self._reported:
                self._reported.add(text)
                # Truncated: the word comes from the network.
                log.warning("records.unknown_status", status=text[:40], read_as="running")
            return CopyState.RUNNING
        return state

    def record_state(self, record: Mapping[str, Any]) -> CopyState:
        """A replication record's state (a record without a status is running)."""
        return self.state(record.get("status")) or CopyState.RUNNING


def cbr_word(raw: object) -> str:
    """A CBR copy state in CSBS's words (an unknown word kept, lower-cased: the reader that
    meets it says so once and reads it as running)."""
    text = str(raw or "").lower()
    return CBR_WORDS.get(text, text)


def record_id_of(record: Mapping[str, Any]) -> str | None:
    value = record.get("id") or record.get("replication_record_id")
    return value if isinstance(value, str) and value else None


def find_record(records: Iterable[Any], record_id: str) -> Mapping[str, Any] | None:
    """The record with ``record_id`` among ``records`` (anything not a dict is ignored)."""
    for record in records:
        if isinstance(record, Mapping) and record_id_of(record) == record_id:
            return record
    return None


def live_record_id(
    records: Iterable[Any],
    reader: RecordReader,
    *,
    item_id: str,
    destination_region: str,
) -> str | None:
    """The id of a record of ``item_id`` to ``destination_region`` that is running or
    succeeded (a failed or skipped one does not block another replication)."""
    record = live_record(records, reader, item_id=item_id, destination_region=destination_region)
    return None if record is None else record_id_of(record)


def live_record(
    records: Iterable[Any],
    reader: RecordReader,
    *,
    item_id: str,
    destination_region: str,
) -> Mapping[str, Any] | None:
    """The first record of ``item_id`` to ``destination_region`` that is running or
    succeeded and carries an id (reconcile needs its ``created_at`` too)."""
    for record in records:
        if not isinstance(record, Mapping):
            continue
        if record.get("destination_region") != destination_region:
            continue
        source = record.get("source_checkpoint_item_id")
        if source is not None and source != item_id:
            continue
        if reader.record_state(record).live and record_id_of(record) is not None:
            return record
    return None


def ledger_line_state(line: Mapping[str, Any], reader: RecordReader) -> CopyState | None:
    """The state of a ledger ``copy_status`` line: its ``state`` field, or (older ledgers,
    which have none) what its ``copy_status`` word means."""
    state = line.get("state")
    if isinstance(state, str):
        try:
            return CopyState(state)
        except ValueError:
            pass
    return reader.state(line.get("copy_status"))
