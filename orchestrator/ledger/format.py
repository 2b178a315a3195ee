"""The ledger's vocabulary in one place: its schema version, event names, stop reasons, and
what a line is about (its pair, or for a rejected row its manifest line).

A ledger line is a JSON object with ``v`` (the schema version) and ``event``. Every word a
line may carry that a reader decides on is an enum here, so that adding one is a change in
this module that the type checker carries to every reader. The enums are ``StrEnum``: they
are written as, and compare equal to, the plain strings of the ledger (a public contract
read with ``jq``).
"""

from __future__ import annotations

import enum
import hashlib
import os
from collections.abc import Mapping
from typing import Any, Final

from orchestrator.models import PairKey, ResultStatus

__all__ = [
    "PAIR_EVENTS",
    "ROW_KEY_SIZE",
    "SCHEMA_VERSION",
    "UNKNOWN",
    "LedgerEvent",
    "PairKeys",
    "StopReason",
    "pair_ids",
]

#: The version every line is written with; a reader refuses a newer one.
SCHEMA_VERSION: Final = 1
#: The state of a pair with an ``attempt`` line and no ``result`` after it (sent, and the run
#: stopped before its answer): ``report``'s status, and its key in ``run_finished``'s counts.
UNKNOWN: Final = "unknown"


class LedgerEvent(enum.StrEnum):
    """The ``event`` field of a ledger line."""

    RUN_STARTED = "run_started"
    ATTEMPT = "attempt"
    RESULT = "result"
    RUN_FINISHED = "run_finished"
    COPY_STATUS = "copy_status"


#: The events of a pair's request: what every fold reads per line (plain strings: a str
#: compared with a StrEnum member costs more, once per line).
PAIR_EVENTS: Final = frozenset({LedgerEvent.ATTEMPT.value, LedgerEvent.RESULT.value})


class StopReason(enum.StrEnum):
    """Why a run stopped before its work was done: ``run_finished``'s ``reason``.

    A run that did all its work has no reason (``null``)."""

    SIGNAL = "signal"  # SIGINT/SIGTERM: resume finishes the work
    DEADLINE = "deadline"  # --max-duration passed: resume finishes the work
    THRESHOLD = "threshold"  # too many pairs failed
    AUTH = "auth"  # the service refused our credentials
    UNREACHABLE = "unreachable"  # no request could connect to the service
    MANIFEST_CHANGED = "manifest_changed"  # the manifest's bytes changed under the run

    @property
    def interrupted(self) -> bool:
        """Stopped from outside the work itself (``run_finished``'s ``interrupted``)."""
        return self in (StopReason.SIGNAL, StopReason.DEADLINE, StopReason.MANIFEST_CHANGED)


# --- what a line is about -----------------------------------------------------------------


def pair_ids(record: Mapping[str, Any]) -> PairKey | None:
    """The pair an ``attempt``, ``result`` or ``copy_status`` line is about: (project, item,
    destination region), the item being the checkpoint item (CSBS) or the backup (CBR; its
    vault is not part of the pair, as a manifest's is not). None when a line lacks one of them
    as text (written by hand?): no fold guesses a pair for it."""
    project = record.get("project_id")
    item = record.get("checkpoint_item_id") or record.get("backup_id")
    region = record.get("destination_region")
    if type(project) is not str or type(item) is not str or type(region) is not str:
        return None
    return project, item, region


#: The length of a rejected row's key (:meth:`PairKeys.counted`): no pair key has it.
ROW_KEY_SIZE: Final = 16


class PairKeys:
    """The one key of a pair, for every fold of the ledger (resume's history, the report, the
    pairs report): compact, exact bytes of :func:`pair_ids`.

    16 bytes of the item's UUID plus a short number for the (project, region) combination,
    which a run has only a few of: 17 bytes or more. The numbering lives in this object, so
    keys from one ``PairKeys`` only compare with keys from the same one (the history lends
    its own to the plan). An item id that is not a UUID gets a 12-byte BLAKE2b digest of the
    whole pair instead: a different length, so it cannot meet an exact key. A UUID is read
    by its 16 bytes, so ``ABCD...`` and ``abcd...`` are one pair (the manifest lower-cases
    ids; a ledger written by hand may not have).
    """

    __slots__ = ("numbers",)

    def __init__(self) -> None:
        #: (project, region) -> its number. Public for the history's hot loop, which inlines
        #: :meth:`__call__`; change the two together.
        self.numbers: dict[tuple[str, str], bytes] = {}

    def __call__(self, project_id: str, checkpoint_item_id: str, destination_region: str) -> bytes:
        combo = self.numbers.get((project_id, destination_region))
        if combo is None:
            combo = self.combo(project_id, destination_region)
        try:
            raw = bytes.fromhex(checkpoint_item_id.replace("-", ""))
        except ValueError:
            raw = b""
        if len(raw) != 16:
            return _digest(project_id, checkpoint_item_id, destination_region)
        return raw + combo

    def combo(self, project_id: str, destination_region: str) -> bytes:
        """The (minimal, so unambiguous) byte string numbering this combination."""
        combo = self.numbers.get((project_id, destination_region))
        if combo is None:
            n = len(self.numbers)
            combo = n.to_bytes(max(1, (n.bit_length() + 7) // 8), "big")
            self.numbers[project_id, destination_region] = combo
        return combo

    def of(self, record: Mapping[str, Any]) -> bytes | None:
        """The key of the pair a line is about; None without one (see :func:`pair_ids`)."""
        ids = pair_ids(record)
        return None if ids is None else self(*ids)

    def counted(self, record: Mapping[str, Any]) -> bytes | None:
        """What an ``attempt`` or ``result`` line counts under in a report: its pair, or for
        a rejected row (or a result without a pair) the manifest row, so that a rejected row
        counts once per row, as the run counted it, and two rows of one pair (a conflict)
        twice. An attempt without a pair counts under nothing (None)."""
        if record.get("status") == ResultStatus.REJECTED:
            return _row_key(record)
        key = self.of(record)
        if key is None and record.get("event") == LedgerEvent.RESULT:
            return _row_key(record)
        return key


def _digest(project_id: str, checkpoint_item_id: str, destination_region: str) -> bytes:
    text = f"{project_id}\0{checkpoint_item_id}\0{destination_region}"
    return hashlib.blake2b(text.encode(), digest_size=12).digest()


def _row_key(record: Mapping[str, Any]) -> bytes:
    """The manifest line a rejected row came from, and what it named. The manifest by its file
    name only: a resume names it as its run recorded it (absolute), the first run as it was
    typed (often relative), and one line must count once."""
    manifest = os.path.basename(str(record.get("manifest") or ""))
    what = (
        record.get("checkpoint_item_id") or record.get("backup_id"),
        record.get("destination_region"),
    )
    raw = f"\x00rejected\x1f{manifest}\x1f{record.get('manifest_line')}\x1f{what}".encode()
    return hashlib.blake2b(raw, digest_size=ROW_KEY_SIZE).digest()
