"""What the ledger says about each pair: the fold that ``resume`` and the plan read.

For every pair (source project, checkpoint item, destination region) the history keeps the
latest final result, its replication record id, whether an attempt came after that result
(an *unknown outcome*: the request may have been applied) and the latest copy status that
``track`` recorded.

A million-line ledger must load in seconds and well under 200 MB. So a pair is keyed by
the compact bytes of the ledger's one pair key (:class:`~orchestrator.ledger.format.PairKeys`:
the item's UUID as 16 raw bytes and a number for its project and region, the key the report
folds by too), its state is one small int, and record ids that are UUIDs
(all of them, in practice) are kept as 16 raw bytes in one ``bytearray``.
"""

from __future__ import annotations

import os
import re
import zlib
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any, Final, NamedTuple

from orchestrator.ledger.format import PAIR_EVENTS, LedgerEvent, PairKeys
from orchestrator.ledger.reader import LedgerReader
from orchestrator.ledger.snapshot import SavedFold, load_snapshot, save_snapshot
from orchestrator.models import CopyWord, PairKey, ResultStatus

# PairKeys: re-exported, the plan borrows the history's own.
__all__ = ["ABSENT", "CopyStatus", "History", "PairView"]


#: ``copy_status`` values written by ``track``: the service's own word, from a replication
#: record's ``status`` or an item's ``extend_info.copy_status`` (:class:`CopyWord`; what each
#: means is read in :mod:`orchestrator.service.records`). Their codes in a pair's state, and
#: in snapshots: the first four are those of older ledgers and snapshots; new words only ever
#: append (three bits: at most seven). A word not listed is not kept.
CopyStatus = str
_COPY_STATUSES: Final = (
    CopyWord.WAITING_COPY,
    CopyWord.COPYING,
    CopyWord.SUCCESS,
    CopyWord.FAIL,
    CopyWord.SKIP,
    CopyWord.WAITING_REPLICATE,
    CopyWord.REPLICATING,
)

# A pair's state packed in one int (small ints are shared objects: no allocation at all
# for a pair without a record id):
#   bits 0-2  latest final result status (0: none)
#   bit  3    unknown outcome: an attempt came after the latest result
#   bits 4-6  latest copy status (0: none)
#   bits 7-   1 + reference of the replication record id (0: none); the reference is
#             slot << 1 for a UUID in the arena, index << 1 | 1 for any other text; or,
#             loaded with record_ids=False, 1 + a 32-bit hash of the id
_STATUS_BITS: Final = 0b111
_UNKNOWN: Final = 0b1000
_COPY_SHIFT: Final = 4
_COPY_BITS: Final = 0b111 << _COPY_SHIFT
_RID_SHIFT: Final = 7
_LOW: Final = (1 << _RID_SHIFT) - 1  # the status, unknown and copy bits


_FINAL: Final = (
    ResultStatus.REPLICATED,
    ResultStatus.ALREADY_REPLICATED,
    ResultStatus.FAILED,
    ResultStatus.GAVE_UP,
)
_STATUS_CODE: Final[Mapping[str, int]] = {str(s): i for i, s in enumerate(_FINAL, 1)}
_STATUS_OF: Final = (None, *_FINAL)
_COPY_CODE: Final[Mapping[str, int]] = {str(s): i for i, s in enumerate(_COPY_STATUSES, 1)}
_COPY_OF: Final = (None, *map(str, _COPY_STATUSES))  # plain text, as it was read
_COPY_FAIL: Final = _COPY_CODE[CopyWord.FAIL]

_is_uuid = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}").fullmatch


def _hashed_record_id(value: object) -> int:
    """A record id as its CRC-32 (plus one, so never 0), in the id's bits. Not ``hash()``:
    that differs from process to process, and a snapshot carries these into the next one."""
    if not value:
        return 0
    text = value if type(value) is str else str(value)
    return (zlib.crc32(text.encode("utf-8", "surrogatepass")) + 1) << _RID_SHIFT


class PairView(NamedTuple):
    """One pair as the ledger leaves it (what the plan needs to decide)."""

    status: ResultStatus | None
    unknown_outcome: bool
    copy_failed: bool


#: The view of a pair the ledger does not mention (always this very object).
ABSENT: Final = PairView(None, False, False)


class History:
    """The ledger folded per pair. Build it with :meth:`load`."""

    def __init__(self) -> None:
        self.keys = PairKeys()
        self._pairs: dict[bytes, int] = {}
        self._arena = bytearray()
        self._odd_ids: list[str] = []
        # load(record_ids=False): a pair keeps a 32-bit hash of its record id instead, enough
        # to tell a copy_status line about an older replica from one about the current.
        self._hashed_ids = False
        self.last_run_started: dict[str, Any] | None = None
        self.last_run_finished: dict[str, Any] | None = None
        self.runs = 0
        self.lines = 0
        self.rejected = 0
        self.skipped = 0  # lines without the ids they should carry (written by hand?)
        # How much of the ledger is folded (bytes, lines) and how much of that came from the
        # snapshot: the rest was parsed line by line.
        self.ledger_end = 0
        self.ledger_lines = 0
        self.snapshot_end = 0
        self.snapshot_note = "not looked for"

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, record_ids: bool = True) -> History:
        """Fold the ledger at ``path``; a missing file is an empty history.

        ``record_ids=False`` leaves the replication record ids out (:meth:`record_id` then
        answers None; copy statuses are still matched to the current replica): a plan needs
        only the statuses, and keeping a million ids is a tenth of the fold's time. Such a
        history starts from the ledger's snapshot when one matches it (see
        :mod:`orchestrator.ledger.snapshot`) and folds only the lines after it."""
        history = cls()
        history._hashed_ids = not record_ids
        if os.path.exists(path):
            if not record_ids:
                history._restore(path)
            history.catch_up(path)
        return history

    def catch_up(self, path: str | os.PathLike[str]) -> int:
        """Fold the lines the ledger gained since this history last read it; returns how many.

        Call it on the ledger it was loaded from: a run's own lines, folded after the run,
        make the history current for :meth:`save_snapshot`."""
        # Compact lines keep all the fold needs: no expansion (and a snapshot may end mid-run).
        reader = LedgerReader(path, start=self.ledger_end, lines=self.ledger_lines, expand=False)
        before = self.ledger_lines
        self._fold_all(reader)
        self.ledger_end, self.ledger_lines = reader.end, reader.lines
        return self.ledger_lines - before

    def save_snapshot(self, path: str | os.PathLike[str]) -> int:
        """Save this history beside the ledger at ``path``, which it must have been loaded
        from (with ``record_ids=False``) and caught up with; returns the snapshot's size.

        Raises OSError when it cannot be written, LedgerError when the ledger is shorter than
        this history has read (the ledger is intact either way)."""
        if not self._hashed_ids:
            raise ValueError("only a history loaded with record_ids=False is saved")
        fold = SavedFold(
            end=self.ledger_end,
            lines=self.ledger_lines,
            pairs=self._pairs,
            combos=list(self.keys.numbers),
            counters={
                "runs": self.runs,
                "records": self.lines,
                "rejected": self.rejected,
                "skipped": self.skipped,
            },
            last_run_started=self.last_run_started,
            last_run_finished=self.last_run_finished,
        )
        size = save_snapshot(path, fold)
        self.snapshot_end = self.ledger_end
        return size

    def _restore(self, path: str | os.PathLike[str]) -> None:
        fold, self.snapshot_note = load_snapshot(path)
        if fold is None:
            return
        for project_id, region in fold.combos:
            self.keys.combo(project_id, region)
        if len(self.keys.numbers) != len(fold.combos):  # the numbering would not match
            self.keys = PairKeys()
            self.snapshot_note = "snapshot malformed (a combination listed twice)"
            return
        self._pairs = fold.pairs
        self.runs = fold.counters.get("runs", 0)
        self.lines = fold.counters.get("records", 0)
        self.rejected = fold.counters.get("rejected", 0)
        self.skipped = fold.counters.get("skipped", 0)
        self.last_run_started = fold.last_run_started
        self.last_run_finished = fold.last_run_finished
        self.ledger_end = self.snapshot_end = fold.end
        self.ledger_lines = fold.lines

    def _fold_all(self, records: Iterable[dict[str, Any]]) -> None:
        # The hot loop of ``load``: attempt and result lines are folded inline (a method
        # call per line would cost a second per million lines); the rare events are not.
        pairs = self._pairs
        get = pairs.get
        fromhex = bytes.fromhex
        combos = self.keys.numbers  # the inlined PairKeys.__call__
        new_combo = self.keys.combo
        status_code = _STATUS_CODE.get
        store_record_id = _hashed_record_id if self._hashed_ids else self._store_record_id
        pair_events, result = PAIR_EVENTS, LedgerEvent.RESULT.value  # (locals: read per line)
        lines = 0
        for lines, record in enumerate(records, 1):  # noqa: B007 (kept after the loop)
            event = record.get("event")
            if event in pair_events:
                code = status_code(record.get("status"), 0)  # type: ignore[arg-type]
                if event == result and not code:
                    self._fold_other_result(record)
                    continue
                # format.pair_ids and PairKeys.__call__, inlined: this runs once per line.
                project = record.get("project_id")
                item = record.get("checkpoint_item_id") or record.get("backup_id")
                region = record.get("destination_region")
                if type(project) is not str or type(item) is not str or type(region) is not str:
                    self.skipped += 1
                    continue
                try:
                    raw = fromhex(item.replace("-", ""))
                except ValueError:
                    raw = b""
                if len(raw) == 16:
                    digest = raw + (combos.get((project, region)) or new_combo(project, region))
                else:
                    digest = self.keys(project, item, region)
                if code:
                    # A final result replaces everything: status, record id, the unknown
                    # flag and the copy status of the previous replica. A result that gave
                    # up after a request that may have been applied stays unknown.
                    pairs[digest] = code | store_record_id(record.get("replication_record_id"))
                    if record.get("outcome_unknown") is True:
                        pairs[digest] |= _UNKNOWN
                else:
                    pairs[digest] = get(digest, 0) | _UNKNOWN
            else:
                self._fold_rare(event, record)
        self.lines += lines

    # --- queries --------------------------------------------------------------------------

    def __len__(self) -> int:
        """The number of pairs the ledger mentions (attempted, finished or tracked)."""
        return len(self._pairs)

    def __contains__(self, key: object) -> bool:
        if not (isinstance(key, tuple) and len(key) == 3 and all(type(k) is str for k in key)):
            return False
        return self.keys(*key) in self._pairs

    def view(self, digest: bytes) -> PairView:
        """The pair with this key (from :attr:`keys`): the cheap lookup the plan uses."""
        packed = self._pairs.get(digest)
        if packed is None:
            return ABSENT
        return PairView(
            _STATUS_OF[packed & _STATUS_BITS],
            bool(packed & _UNKNOWN),
            (packed & _COPY_BITS) >> _COPY_SHIFT == _COPY_FAIL,
        )

    def status(self, key: PairKey) -> ResultStatus | None:
        """The latest final result status of the pair (never ``rejected``)."""
        return _STATUS_OF[self._pairs.get(self.keys(*key), 0) & _STATUS_BITS]

    def unknown_outcome(self, key: PairKey) -> bool:
        """True when an attempt came after the pair's latest result (or it has none)."""
        return bool(self._pairs.get(self.keys(*key), 0) & _UNKNOWN)

    def copy_status(self, key: PairKey) -> CopyStatus | None:
        """The latest copy status ``track`` recorded for the pair's current replica."""
        return _COPY_OF[(self._pairs.get(self.keys(*key), 0) & _COPY_BITS) >> _COPY_SHIFT]

    def copy_failed(self, key: PairKey) -> bool:
        """True when the service reported the pair's copy as failed: ``--retry-failed``
        sends it again even though the replicate request itself succeeded."""
        return self.copy_status(key) == CopyWord.FAIL

    def record_id(self, key: PairKey) -> str | None:
        """The replication record id of the pair's latest result, if it had one."""
        return self._record_id(self._pairs.get(self.keys(*key), 0))

    def counts(self) -> Counter[ResultStatus]:
        """How many pairs have each latest status (pairs without a result are left out)."""
        counts: Counter[ResultStatus] = Counter()
        for packed in self._pairs.values():
            status = _STATUS_OF[packed & _STATUS_BITS]
            if status is not None:
                counts[status] += 1
        return counts

    def unknown_outcomes(self) -> int:
        """How many pairs have an unknown outcome."""
        return sum(1 for packed in self._pairs.values() if packed & _UNKNOWN)

    # --- the fold -------------------------------------------------------------------------

    def _fold_rare(self, event: object, record: dict[str, Any]) -> None:
        if event == LedgerEvent.COPY_STATUS:
            self._fold_copy_status(record)
        elif event == LedgerEvent.RUN_STARTED:
            self.last_run_started = record
            self.runs += 1
        elif event == LedgerEvent.RUN_FINISHED:
            self.last_run_finished = record

    def _fold_other_result(self, record: dict[str, Any]) -> None:
        """A result without a pair state: rejected rows, or a status this version does not
        know (skipped rather than guessed at)."""
        if record.get("status") == "rejected":
            self.rejected += 1
        else:
            self.skipped += 1

    def _fold_copy_status(self, record: dict[str, Any]) -> None:
        copy = _COPY_CODE.get(record.get("copy_status"))  # type: ignore[arg-type]
        digest = self.keys.of(record)
        if digest is None:
            self.skipped += 1
            return
        if copy is None:
            return
        packed = self._pairs.get(digest, 0)
        tracked = record.get("replication_record_id")
        if self._hashed_ids:
            if tracked and packed >> _RID_SHIFT and _hashed_record_id(tracked) != packed & ~_LOW:
                return  # about an older replica of the pair
        else:
            current = self._record_id(packed)
            if tracked and current and tracked != current:
                return  # about an older replica of the pair
        self._pairs[digest] = (packed & ~_COPY_BITS) | copy << _COPY_SHIFT

    def _store_record_id(self, value: object) -> int:
        if not value:
            return 0
        if type(value) is str and _is_uuid(value):
            ref = len(self._arena) >> 3  # = slot << 1: 16 bytes a slot
            self._arena += bytes.fromhex(value.replace("-", ""))
        else:
            ref = len(self._odd_ids) << 1 | 1
            self._odd_ids.append(str(value))
        return (ref + 1) << _RID_SHIFT

    def _record_id(self, packed: int) -> str | None:
        ref = (packed >> _RID_SHIFT) - 1
        if ref < 0 or self._hashed_ids:
            return None
        if ref & 1:
            return self._odd_ids[ref >> 1]
        start = (ref >> 1) * 16
        h = self._arena[start : start + 16].hex()
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
