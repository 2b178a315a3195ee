"""The stop rules on their own, on a fake clock."""

from __future__ import annotations

from collections import Counter

from orchestrator.engine.stop_rules import FailureThreshold, Unreachable
from orchestrator.errors import TransportError
from orchestrator.ledger.format import StopReason


def test_the_threshold_needs_enough_final_results_and_more_than_the_share_failed() -> None:
    rule = FailureThreshold(min_results=10, percent=50.0)
    assert rule.check(Counter(failed=9)) is None  # too few results to judge
    assert rule.check(Counter(failed=5, replicated=5)) is None  # exactly half is not more
    assert rule.check(Counter(failed=6, replicated=5)) is StopReason.THRESHOLD
    # Rejected rows are not results of the service: they neither count nor dilute.
    assert rule.check(Counter(failed=6, replicated=3, rejected=100)) is None
    assert rule.check(Counter(failed=6, replicated=4, rejected=100)) is StopReason.THRESHOLD


def test_unreachable_after_patience_without_any_answer() -> None:
    now = [100.0]
    rule = Unreachable(60.0, lambda: now[0])
    refused = TransportError("connection refused", maybe_applied=False)
    assert rule.refused(refused) is None  # the first refusal starts the clock
    now[0] = 159.0
    assert rule.refused(refused) is None
    now[0] = 160.0
    assert rule.refused(refused) is StopReason.UNREACHABLE
    assert rule.last_error is refused


def test_a_pair_giving_up_before_any_answer_is_unreachable_at_once() -> None:
    rule = Unreachable(60.0, lambda: 0.0)
    assert rule.gave_up() is None  # no refusal seen: a gave-up pair says nothing
    rule.refused(TransportError("refused", maybe_applied=False))
    assert rule.gave_up() is StopReason.UNREACHABLE


def test_after_an_answer_refusals_are_an_outage_not_a_wrong_address() -> None:
    now = [0.0]
    rule = Unreachable(60.0, lambda: now[0])
    rule.answered = True
    now[0] = 1000.0
    assert rule.refused(TransportError("refused", maybe_applied=False)) is None
    assert rule.gave_up() is None


def test_patience_none_turns_the_rule_off() -> None:
    now = [0.0]
    rule = Unreachable(None, lambda: now[0])
    rule.refused(TransportError("refused", maybe_applied=False))
    now[0] = 1e9
    assert rule.refused(TransportError("refused", maybe_applied=False)) is None
    assert rule.gave_up() is None
