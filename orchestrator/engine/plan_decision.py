"""What the plan does with a pair, decided once from the ledger's history, and the counts
by destination region those decisions add up to.

The ledger (:class:`~orchestrator.ledger.history.History`) decides per pair:

=============================================  ===========================================
the ledger says                                 the plan
=============================================  ===========================================
an attempt after the last result                send, reconciling first (``unknown_outcome``)
``replicated`` / ``already_replicated``         skip (``already_done``)
... but ``track`` saw the copy fail             skip (``skipped_failed``); send with
                                                ``--retry-failed`` (``retry_failed``)
``failed``                                      the same as a failed copy
``gave_up``, or nothing                         send
=============================================  ===========================================

Pass 2 reads the decision of each manifest line (or position in a task list) as one byte, a
*mark*: skip, send, or reconcile first and then send.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Final

from orchestrator.ledger.history import PairView
from orchestrator.models import FINAL_SUCCESS, ResultStatus

__all__ = [
    "DONE",
    "MARKS",
    "MARK_RECONCILE",
    "MARK_SEND",
    "MARK_SKIP",
    "RECONCILE",
    "RETRY",
    "SEND",
    "SKIP_FAILED",
    "RegionCounts",
    "decide",
    "tally",
]

# What happens to a pair, decided once from its history.
SEND, RECONCILE, RETRY, DONE, SKIP_FAILED = range(5)
# The byte per position (manifest line, or index in a task list) that pass 2 reads.
MARK_SKIP, MARK_SEND, MARK_RECONCILE = 0, 1, 2
MARKS: Final = (MARK_SEND, MARK_RECONCILE, MARK_SEND, MARK_SKIP, MARK_SKIP)


@dataclass(slots=True)
class RegionCounts:
    """Rows of one destination region, by what the plan does with them.

    Every valid row lands in exactly one of ``to_send``, ``already_done``,
    ``skipped_failed``, ``duplicates`` and ``conflicts``; ``retry_failed`` and
    ``unknown_outcome`` are the parts of ``to_send`` sent because of ``--retry-failed`` and
    after reconciling. ``invalid`` counts rows that failed validation.
    """

    to_send: int = 0
    already_done: int = 0
    skipped_failed: int = 0
    duplicates: int = 0
    conflicts: int = 0
    invalid: int = 0
    retry_failed: int = 0
    unknown_outcome: int = 0

    @property
    def rows(self) -> int:
        """All rows counted here."""
        return (
            self.to_send
            + self.already_done
            + self.skipped_failed
            + self.duplicates
            + self.conflicts
            + self.invalid
        )

    def add(self, other: RegionCounts) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


def decide(view: PairView, retry_failed: bool) -> int:
    """What to do with a pair the ledger knows: one of ``SEND`` ... ``SKIP_FAILED``."""
    if view.unknown_outcome:
        return RECONCILE
    status = view.status
    if status is None or status is ResultStatus.GAVE_UP:
        return SEND
    failed = status is ResultStatus.FAILED or (status in FINAL_SUCCESS and view.copy_failed)
    if failed:
        return RETRY if retry_failed else SKIP_FAILED
    return DONE


def tally(counts: RegionCounts, decision: int, delta: int) -> None:
    """Count a pair's decision in its region's counts (``delta=-1`` takes it back)."""
    if decision == DONE:
        counts.already_done += delta
    elif decision == SKIP_FAILED:
        counts.skipped_failed += delta
    else:
        counts.to_send += delta
        if decision == RETRY:
            counts.retry_failed += delta
        elif decision == RECONCILE:
            counts.unknown_outcome += delta
