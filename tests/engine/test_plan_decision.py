"""The plan's decision per pair from its ledger view, and the counts those decisions make."""

from __future__ import annotations

import pytest

from orchestrator.engine.plan_decision import (
    DONE,
    MARK_RECONCILE,
    MARK_SEND,
    MARK_SKIP,
    MARKS,
    RECONCILE,
    RETRY,
    SEND,
    SKIP_FAILED,
    RegionCounts,
    decide,
    tally,
)
from orchestrator.ledger.history import PairView
from orchestrator.models import ResultStatus


@pytest.mark.parametrize(
    ("view", "plain", "with_retry"),
    [
        (PairView(None, False, False), SEND, SEND),
        (PairView(ResultStatus.REPLICATED, True, False), RECONCILE, RECONCILE),
        (PairView(ResultStatus.REPLICATED, False, False), DONE, DONE),
        (PairView(ResultStatus.ALREADY_REPLICATED, False, False), DONE, DONE),
        (PairView(ResultStatus.REPLICATED, False, True), SKIP_FAILED, RETRY),
        (PairView(ResultStatus.FAILED, False, False), SKIP_FAILED, RETRY),
        (PairView(ResultStatus.GAVE_UP, False, False), SEND, SEND),
    ],
)
def test_the_ledger_view_decides(view: PairView, plain: int, with_retry: int) -> None:
    assert decide(view, retry_failed=False) == plain
    assert decide(view, retry_failed=True) == with_retry


def test_marks_send_reconcile_or_skip() -> None:
    assert [MARKS[d] for d in (SEND, RECONCILE, RETRY, DONE, SKIP_FAILED)] == [
        MARK_SEND,
        MARK_RECONCILE,
        MARK_SEND,
        MARK_SKIP,
        MARK_SKIP,
    ]
    assert MARK_SKIP == 0  # a fresh bytearray skips every line


def test_tally_counts_each_decision_once_and_takes_it_back() -> None:
    counts = RegionCounts()
    for decision in (SEND, RECONCILE, RETRY, DONE, SKIP_FAILED):
        tally(counts, decision, +1)
    assert counts == RegionCounts(
        to_send=3, already_done=1, skipped_failed=1, retry_failed=1, unknown_outcome=1
    )
    assert counts.rows == 5
    for decision in (SEND, RECONCILE, RETRY, DONE, SKIP_FAILED):
        tally(counts, decision, -1)
    assert counts == RegionCounts()
